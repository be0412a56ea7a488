//! The Via header (RFC 3261 §20.42, §18.2.2; RFC 3581 rport).

use super::params::Params;
use super::scan::Cursor;
use super::uri::Host;
use super::value_error::{HeaderError, UriError};

/// One Via value: `sent-protocol LWS sent-by *( SEMI via-params )`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name, normally `SIP`.
    pub protocol: &'a str,
    /// Protocol version, normally `2.0`.
    pub version: &'a str,
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, … or an unknown token).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by port, if present.
    pub port: Option<u16>,
    /// The via-params.
    pub params: Params<'a>,
}

/// The RFC 3261 branch prefix (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl<'a> Via<'a> {
    /// Parses one Via value (the caller splits comma-separated values).
    pub fn parse(s: &'a str) -> Result<Self, HeaderError> {
        let mut c = Cursor::new(s);
        let via = Self::parse_sent_by(&mut c)?;
        let params = Params::parse_header(&mut c)?;
        c.skip_lws();
        if !c.at_end() {
            return Err(HeaderError::Trailing);
        }
        Ok(Self { params, ..via })
    }

    /// Parses `sent-protocol LWS sent-by` only: what is needed to route a response
    /// (RFC 3261 §18.2.2) even when the parameters are malformed.
    pub(crate) fn parse_sent_by(c: &mut Cursor<'a>) -> Result<Self, HeaderError> {
        c.skip_lws();
        let protocol = c.token()?;
        c.skip_lws();
        c.expect(b'/')?;
        c.skip_lws();
        let version = c.token()?;
        c.skip_lws();
        c.expect(b'/')?;
        c.skip_lws();
        let transport = c.token()?;
        if !c.skip_lws() {
            return Err(HeaderError::Expected(' '));
        }
        let host = Host::parse(c)?;
        // sent-by = host [ COLON port ], COLON = SWS ":" SWS.
        let before = c.pos();
        c.skip_lws();
        let port = if c.peek() == Some(b':') {
            c.eat(b':');
            c.skip_lws();
            let mut tmp = c.clone();
            let digits = tmp.take_while(|b| b.is_ascii_digit());
            let port = digits
                .parse::<u16>()
                .map_err(|_| HeaderError::Uri(UriError::BadPort))?;
            *c = tmp;
            Some(port)
        } else {
            c.reset(before);
            None
        };
        Ok(Self {
            protocol,
            version,
            transport,
            host,
            port,
            params: Params::default(),
        })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie; without it the transaction
    /// is matched by the RFC 2543 rules (§17.2.3).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when present without a value (a request
    /// asking for it), `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The `ttl` parameter (0–255).
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get("ttl")
            .flatten()
            .and_then(|t| t.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_params() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;received=198.51.100.7;rport=6000;maddr=224.2.0.1;ttl=16")
            .expect("valid");
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.host.to_string(), "192.0.2.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.received(), Some("198.51.100.7"));
        assert_eq!(v.rport(), Some(Some(6000)));
        assert_eq!(v.maddr(), Some("224.2.0.1"));
        assert_eq!(v.ttl(), Some(16));
    }

    #[test]
    fn folded_and_spaced() {
        // RFC 4475 §3.1.1.1 wsinv.
        let v =
            Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").expect("valid");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse("SIP / 2.0 / TCP [2001:db8::9] : 5061 ; rport").expect("valid");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
    }

    #[test]
    fn malformed() {
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(";").is_err());
        assert!(Via::parse("").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP host:70000").is_err());
        assert!(Via::parse("SIP/2.0/UDP host junk").is_err());
    }
}
