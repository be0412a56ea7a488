//! Decimal numbers and socket addresses as short text on the stack, without `core::fmt`.
//!
//! Every message the SBC writes carries ports, CSeq numbers, Content-Length and its own
//! addresses (Via, Contact, SDP `c=`/`o=`). Through `core::fmt` one IPv4 address costs about a
//! thousand instructions and a `to_string` a heap allocation (issue 16, CPU per call); these
//! write the same digits directly into a fixed buffer.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Room for the longest text built here, a Contact: `<sip:sbc@` + `[` + the longest IPv6 text
/// (45, with an embedded IPv4) + `]:` + 5 port digits + `;transport=tls>` (80 bytes).
const CAP: usize = 80;

/// ASCII text of at most [`CAP`] bytes, built in place.
#[derive(Clone, Copy)]
pub struct Text {
    buf: [u8; CAP],
    len: usize,
}

impl Text {
    const fn empty() -> Self {
        Self {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// The decimal digits of `n`.
    pub fn decimal(n: u64) -> Self {
        let mut t = Self::empty();
        t.push_decimal(n);
        t
    }

    /// An IP address as in a URI host or SDP: IPv4 dotted quad, IPv6 without brackets.
    pub fn ip(ip: IpAddr) -> Self {
        let mut t = Self::empty();
        t.push_ip(ip, false);
        t
    }

    /// A URI host: IPv4 dotted quad, IPv6 in brackets (RFC 3261 §25.1 `IPv6reference`).
    pub fn host(addr: SocketAddr) -> Self {
        let mut t = Self::empty();
        t.push_ip(addr.ip(), true);
        t
    }

    /// A URI `host:port` (IPv6 in brackets).
    pub fn hostport(addr: SocketAddr) -> Self {
        let mut t = Self::host(addr);
        t.push(b":");
        t.push_decimal(u64::from(addr.port()));
        t
    }

    /// The SBC's own Contact URI in brackets: `<sip:sbc@host:port` + `params` + `>`, where
    /// `params` is one of the short `;transport=` parameters.
    pub fn contact(addr: SocketAddr, params: &str) -> Self {
        let mut t = Self::empty();
        t.push(b"<sip:sbc@");
        t.push_ip(addr.ip(), true);
        t.push(b":");
        t.push_decimal(u64::from(addr.port()));
        t.push(params.as_bytes());
        t.push(b">");
        t
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Appends ASCII bytes; what does not fit is cut off (never the case for the texts built
    /// here, which [`CAP`] bounds).
    fn push(&mut self, bytes: &[u8]) {
        // Byte by byte: these pieces are one to a few bytes, where a `memcpy` call cost more.
        for &b in bytes {
            self.push_byte(b);
        }
    }

    fn push_byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn push_decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn push_ipv4(&mut self, ip: Ipv4Addr) {
        for (i, o) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push_byte(b'.');
            }
            // One to three digits, without the general loop.
            if o >= 100 {
                self.push_byte(b'0' + o / 100);
            }
            if o >= 10 {
                self.push_byte(b'0' + o / 10 % 10);
            }
            self.push_byte(b'0' + o % 10);
        }
    }

    fn push_ip(&mut self, ip: IpAddr, brackets: bool) {
        match ip {
            IpAddr::V4(a) => self.push_ipv4(a),
            IpAddr::V6(a) => {
                // IPv6 keeps std's formatting (zero compression, embedded IPv4): rare on a
                // trunk, and its rules are not worth repeating here.
                if brackets {
                    self.push(b"[");
                }
                let _ = fmt::Write::write_fmt(self, format_args!("{a}"));
                if brackets {
                    self.push(b"]");
                }
            }
        }
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The parts joined into one `String`, allocated once at its final size: what `format!` of
/// plain strings does, without its formatting machinery (~1,500 instructions for a header).
pub(crate) fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_as_core_fmt() {
        for n in [0, 7, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(Text::decimal(n).as_str(), n.to_string());
        }
        for a in [
            "0.0.0.0:0",
            "10.0.0.1:5060",
            "255.255.255.255:65535",
            "[::1]:5061",
            "[2001:db8::9]:5060",
            "[::ffff:192.0.2.1]:1",
            "[1111:2222:3333:4444:5555:6666:7777:8888]:65535",
        ] {
            let addr: SocketAddr = a.parse().expect("literal");
            assert_eq!(Text::hostport(addr).as_str(), a);
            let host = match addr {
                SocketAddr::V4(v) => v.ip().to_string(),
                SocketAddr::V6(v) => format!("[{}]", v.ip()),
            };
            assert_eq!(Text::host(addr).as_str(), host);
            assert_eq!(Text::ip(addr.ip()).as_str(), addr.ip().to_string());
            assert_eq!(
                Text::contact(addr, ";transport=tls").as_str(),
                format!("<sip:sbc@{a};transport=tls>")
            );
        }
    }
}
