//! `[[trunk]] proxy`: an IP address with a port, a host name with a port, or a bare host name
//! (RFC 3263 §4: the form decides whether SRV records are looked up).

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a trunk's proxy is, as configured. Serialised as the string it was written as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProxyAddr {
    /// `192.0.2.1:5060` or `[2001:db8::1]:5060`: used as is, no DNS at all.
    Addr(SocketAddr),
    /// `sip.carrier.example:5060`: A/AAAA lookup only; an explicit port means no SRV
    /// (RFC 3263 §4.2).
    HostPort {
        /// The host name, lower case, without a trailing dot.
        host: String,
        /// The port.
        port: u16,
    },
    /// `sip.carrier.example`: SRV lookup by transport, then A/AAAA on the default port if
    /// there is no SRV record (RFC 3263 §4.2).
    Host(String),
}

/// Why a `proxy` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyAddrError {
    /// Empty string.
    #[error("empty; expected address:port, host:port or host")]
    Empty,
    /// The port is not a number in 1-65535.
    #[error("`{0}` is not a port (1-65535)")]
    Port(String),
    /// An IP address without a port: kept an error (as before names were accepted) so that a
    /// forgotten port is not silently replaced by 5060.
    #[error("an IP address needs a port, e.g. `{0}:5060`")]
    IpWithoutPort(String),
    /// Not a valid host name (RFC 1123 labels).
    #[error(
        "`{0}` is not a valid host name (labels of 1-63 letters, digits and '-', at most 253 \
         characters)"
    )]
    Host(String),
}

impl ProxyAddr {
    /// A stand-in target for a proxy whose name has not resolved yet. Sends to it fail at
    /// once (port 0 is refused by the kernel), and the trunk is marked unusable meanwhile.
    pub const UNRESOLVED: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

    /// The address when the proxy is an IP literal (no DNS needed); `None` for names.
    pub const fn static_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Addr(a) => Some(*a),
            Self::HostPort { .. } | Self::Host(_) => None,
        }
    }

    /// The host name to resolve; `None` for IP literals.
    pub fn host_name(&self) -> Option<&str> {
        match self {
            Self::Addr(_) => None,
            Self::HostPort { host, .. } | Self::Host(host) => Some(host),
        }
    }

    /// The host part as written into SIP (the IP, or the name): the default registration
    /// domain and TLS server name.
    pub fn host(&self) -> String {
        match self {
            Self::Addr(a) => a.ip().to_string(),
            Self::HostPort { host, .. } | Self::Host(host) => host.clone(),
        }
    }
}

impl FromStr for ProxyAddr {
    type Err = ProxyAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ProxyAddrError::Empty);
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self::Addr(a));
        }
        if s.parse::<std::net::IpAddr>().is_ok()
            || s.starts_with('[')
            || s.bytes().filter(|b| *b == b':').count() > 1
        {
            // A bare IPv6 address, `[v6]` without a port, or an IPv4 address without one.
            return Err(ProxyAddrError::IpWithoutPort(s.to_owned()));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ProxyAddrError::Port(p.to_owned()))?;
                (h, Some(port))
            }
            None => (s, None),
        };
        let host = valid_host(host).ok_or_else(|| ProxyAddrError::Host(host.to_owned()))?;
        Ok(match port {
            Some(port) => Self::HostPort { host, port },
            None => Self::Host(host),
        })
    }
}

/// The host name in canonical form (lower case, no trailing dot), if it is valid: RFC 1123
/// labels, and a last label that is not all digits (so `10.0.0.300` is not taken for a name).
pub(super) fn valid_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let labels_ok = host.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let last_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (labels_ok && !last_numeric).then(|| host.to_ascii_lowercase())
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(a) => write!(f, "{a}"),
            Self::HostPort { host, port } => write!(f, "{host}:{port}"),
            Self::Host(host) => f.write_str(host),
        }
    }
}

impl TryFrom<String> for ProxyAddr {
    type Error = ProxyAddrError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ProxyAddr> for String {
    fn from(p: ProxyAddr) -> Self {
        p.to_string()
    }
}

impl From<SocketAddr> for ProxyAddr {
    fn from(a: SocketAddr) -> Self {
        Self::Addr(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let cases: &[(&str, ProxyAddr)] = &[
            (
                "127.0.0.1:5090",
                ProxyAddr::Addr("127.0.0.1:5090".parse().expect("literal")),
            ),
            (
                "[::1]:5060",
                ProxyAddr::Addr("[::1]:5060".parse().expect("literal")),
            ),
            (
                "sip.Carrier.example:5070",
                ProxyAddr::HostPort {
                    host: "sip.carrier.example".into(),
                    port: 5070,
                },
            ),
            (
                "sip.carrier.example.",
                ProxyAddr::Host("sip.carrier.example".into()),
            ),
            ("carrier", ProxyAddr::Host("carrier".into())),
            ("a-1.b2.example", ProxyAddr::Host("a-1.b2.example".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<ProxyAddr>().as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_neither_address_nor_name() {
        let cases: &[(&str, ProxyAddrError)] = &[
            ("", ProxyAddrError::Empty),
            (
                "127.0.0.1",
                ProxyAddrError::IpWithoutPort("127.0.0.1".into()),
            ),
            ("::1", ProxyAddrError::IpWithoutPort("::1".into())),
            ("[::1]", ProxyAddrError::IpWithoutPort("[::1]".into())),
            ("host:0", ProxyAddrError::Port("0".into())),
            ("host:99999", ProxyAddrError::Port("99999".into())),
            ("host:", ProxyAddrError::Port(String::new())),
            ("bad name", ProxyAddrError::Host("bad name".into())),
            ("-x.example", ProxyAddrError::Host("-x.example".into())),
            ("a..example", ProxyAddrError::Host("a..example".into())),
            ("10.0.0.300:5060", ProxyAddrError::Host("10.0.0.300".into())),
            (
                "under_score.example",
                ProxyAddrError::Host("under_score.example".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<ProxyAddr>().as_ref(), Err(want), "{text}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(long.parse::<ProxyAddr>().is_err());
    }

    #[test]
    fn round_trips_as_a_string() {
        for text in [
            "127.0.0.1:5090",
            "[::1]:5060",
            "sip.example:5070",
            "sip.example",
        ] {
            let p: ProxyAddr = text.parse().expect("valid");
            assert_eq!(p.to_string(), text);
            assert_eq!(String::from(p.clone()).parse::<ProxyAddr>(), Ok(p));
        }
    }

    #[test]
    fn static_addr_only_for_ip_literals() {
        let ip: ProxyAddr = "127.0.0.1:5090".parse().expect("valid");
        assert_eq!(
            ip.static_addr(),
            Some("127.0.0.1:5090".parse().expect("literal"))
        );
        assert_eq!(ip.host(), "127.0.0.1");
        let name: ProxyAddr = "sip.example".parse().expect("valid");
        assert_eq!(name.static_addr(), None);
        assert_eq!(name.host_name(), Some("sip.example"));
    }
}
