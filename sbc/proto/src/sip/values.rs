//! Small typed header values: Content-Type, RAck, Retry-After, Session-Expires, Reason.

use super::method::Method;
use super::params::Params;
use super::scan::{self, Cursor};
use super::value_error::HeaderError;

/// `Content-Type: type "/" subtype *( SEMI m-parameter )` (RFC 3261 §20.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// The type, e.g. `application`.
    pub mtype: &'a str,
    /// The subtype, e.g. `sdp`.
    pub subtype: &'a str,
    /// The parameters (e.g. `boundary`).
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses a media type.
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let mtype = c.token()?;
        c.skip_lws();
        c.expect(b'/')?;
        c.skip_lws();
        let subtype = c.token()?;
        let params = Params::parse_header(&mut c)?;
        end(&mut c)?;
        Ok(Self {
            mtype,
            subtype,
            params,
        })
    }

    /// Whether this is `application/sdp` (case-insensitive, RFC 2045).
    pub fn is_sdp(&self) -> bool {
        self.mtype.eq_ignore_ascii_case("application") && self.subtype.eq_ignore_ascii_case("sdp")
    }
}

fn end(c: &mut Cursor<'_>) -> Result<(), HeaderError> {
    c.skip_lws();
    if c.at_end() {
        Ok(())
    } else {
        Err(HeaderError::Trailing)
    }
}

/// Parses a value that is a single delta-seconds or other 32-bit number.
pub(crate) fn parse_number(s: &str) -> Result<u32, HeaderError> {
    scan::parse_u32(scan::trim_lws(s))
}

/// `RAck: response-num LWS CSeq-num LWS Method` (RFC 3262 §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq being acknowledged.
    pub rseq: u32,
    /// The CSeq number of the response's request.
    pub cseq: u32,
    /// The method of that request.
    pub method: Method,
}

impl RAck {
    /// Parses a RAck value.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let rseq = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))?;
        if !c.skip_lws() {
            return Err(HeaderError::Expected(' '));
        }
        let cseq = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))?;
        if !c.skip_lws() {
            return Err(HeaderError::Expected(' '));
        }
        let method = Method::from_token(c.token()?).ok_or(HeaderError::ExpectedToken)?;
        end(&mut c)?;
        Ok(Self { rseq, cseq, method })
    }
}

/// `Retry-After: delta-seconds [ comment ] *( SEMI retry-param )` (RFC 3261 §20.33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter<'a> {
    /// Seconds to wait.
    pub seconds: u32,
    /// The comment, with its parentheses.
    pub comment: Option<&'a str>,
    /// The parameters (e.g. `duration`).
    pub params: Params<'a>,
}

impl<'a> RetryAfter<'a> {
    /// Parses a Retry-After value.
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let seconds = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))?;
        c.skip_lws();
        let comment = if c.peek() == Some(b'(') {
            let start = c.pos();
            let mut depth = 0usize;
            let bytes = s.as_bytes();
            let mut i = start;
            loop {
                match bytes.get(i) {
                    None => return Err(HeaderError::Expected(')')),
                    Some(b'\\') => i += 2,
                    Some(b'(') => {
                        depth += 1;
                        i += 1;
                    }
                    Some(b')') => {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Some(_) => i += 1,
                }
            }
            c.reset(i.min(s.len()));
            Some(c.since(start))
        } else {
            None
        };
        let params = Params::parse_header(&mut c)?;
        end(&mut c)?;
        Ok(Self {
            seconds,
            comment,
            params,
        })
    }
}

/// `Session-Expires: delta-seconds *( SEMI se-params )` (RFC 4028 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires<'a> {
    /// The session interval in seconds.
    pub seconds: u32,
    /// The parameters.
    pub params: Params<'a>,
}

impl<'a> SessionExpires<'a> {
    /// Parses a Session-Expires value.
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let seconds = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))?;
        let params = Params::parse_header(&mut c)?;
        end(&mut c)?;
        Ok(Self { seconds, params })
    }

    /// The `refresher` parameter (`uac` or `uas`).
    pub fn refresher(&self) -> Option<&'a str> {
        self.params.get("refresher").flatten()
    }
}

/// One Reason value: `protocol *( SEMI reason-params )` (RFC 3326).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason<'a> {
    /// `SIP`, `Q.850` or another token.
    pub protocol: &'a str,
    /// The parameters (`cause`, `text`).
    pub params: Params<'a>,
}

impl<'a> Reason<'a> {
    /// Parses one Reason value.
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let protocol = c.token()?;
        let params = Params::parse_header(&mut c)?;
        end(&mut c)?;
        Ok(Self { protocol, params })
    }

    /// The `cause` parameter.
    pub fn cause(&self) -> Option<u16> {
        self.params
            .get("cause")
            .flatten()
            .and_then(|v| v.parse().ok())
    }

    /// The `text` parameter, with quotes.
    pub fn text(&self) -> Option<&'a str> {
        self.params.get("text").flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").expect("valid");
        assert_eq!((m.mtype, m.subtype), ("multipart", "mixed"));
        assert_eq!(m.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
        assert!(MediaType::parse("Application/SDP").expect("valid").is_sdp());
        assert!(MediaType::parse("application").is_err());
    }

    #[test]
    fn rack_retry_session_reason() {
        let r = RAck::parse("776656 1 INVITE").expect("valid");
        assert_eq!((r.rseq, r.cseq, r.method), (776656, 1, Method::Invite));
        let ra = RetryAfter::parse("18000;duration=3600").expect("valid");
        assert_eq!(ra.seconds, 18000);
        assert_eq!(ra.params.get("duration"), Some(Some("3600")));
        let ra = RetryAfter::parse("120 (I'm in a (meeting))").expect("valid");
        assert_eq!(ra.comment, Some("(I'm in a (meeting))"));
        assert!(RetryAfter::parse("949302838503028349304023988").is_err());
        let se = SessionExpires::parse("1800;refresher=uac").expect("valid");
        assert_eq!((se.seconds, se.refresher()), (1800, Some("uac")));
        let re = Reason::parse("Q.850 ;cause=16 ;text=\"Terminated\"").expect("valid");
        assert_eq!(
            (re.protocol, re.cause(), re.text()),
            ("Q.850", Some(16), Some("\"Terminated\""))
        );
    }
}
