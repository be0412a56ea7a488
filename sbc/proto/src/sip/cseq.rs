//! The CSeq header (RFC 3261 §20.16).

use super::method::Method;
use super::scan::{self, Cursor};
use super::value_error::HeaderError;

/// `CSeq: 1*DIGIT LWS Method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number. RFC 3261 §8.1.1.5 requires it below 2**31 for new requests; any
    /// value that fits 32 bits is accepted (RFC 4475 §3.1.2.4 rejects larger ones).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let seq = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))?;
        if !c.skip_lws() {
            return Err(HeaderError::Expected(' '));
        }
        let method = Method::from_token(c.token()?).ok_or(HeaderError::ExpectedToken)?;
        c.skip_lws();
        if !c.at_end() {
            return Err(HeaderError::Trailing);
        }
        Ok(Self { seq, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        let c = CSeq::parse("0009\r\n  INVITE").expect("valid");
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert_eq!(
            CSeq::parse("36893488147419103232 REGISTER"),
            Err(HeaderError::NumberOverflow)
        );
        assert_eq!(CSeq::parse("1INVITE"), Err(HeaderError::Expected(' ')));
        assert_eq!(CSeq::parse("INVITE"), Err(HeaderError::BadNumber));
        assert_eq!(CSeq::parse("1 INVITE x"), Err(HeaderError::Trailing));
    }
}
