//! Digest challenge parsing and response computation (RFC 2617 §3.2, RFC 7616 §3.4, RFC 8760).
//!
//! Supported: `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`, with `qop=auth` (nonce count and
//! client nonce) or without `qop` (RFC 2069 compatibility, still sent by some carriers).
//! `auth-int` is not offered by the SBC: it would need the body hash of every request and
//! carriers do not require it.

use std::fmt::{self, Write as _};

use md5::Md5;
use sha2::Sha256;

use super::error::DigestError;
use crate::sip::{Auth, unquote};

/// A digest algorithm (RFC 7616 §6.1 registry, RFC 8760 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (the default when `algorithm` is absent, RFC 2617 §3.2.1).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses an `algorithm` token, case-insensitively (RFC 7616 §3.3).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Md5, Self::Md5Sess, Self::Sha256, Self::Sha256Sess]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// The token as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    const fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// `H(data)` as lower-case hex (RFC 7616 §3.4.1: "the output is 32 or 64 hex digits").
    pub(crate) fn hash(self, parts: &[&str]) -> String {
        fn feed<D: sha2::Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
        match self {
            Self::Md5 | Self::Md5Sess => feed::<Md5>(parts),
            Self::Sha256 | Self::Sha256Sess => feed::<Sha256>(parts),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A password: kept out of `Debug` output so it never reaches a log line.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The password itself (only for the hash computation).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What the SBC authenticates with toward one trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The digest `username` (the trunk's auth username, else its username).
    pub username: String,
    /// The password.
    pub password: Secret,
    /// Only challenges for this realm are answered (None: any realm), so credentials are not
    /// offered to whoever challenges (RFC 3261 §22.1 leaves the choice to the UAC).
    pub realm: Option<String>,
}

/// A parsed `Digest` challenge (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`, unquoted.
    pub realm: String,
    /// `nonce`, unquoted.
    pub nonce: String,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// The server offered `qop=auth`; without it the RFC 2069 form is used.
    pub qop_auth: bool,
    /// `stale=true`: the previous nonce expired but the credentials were right (RFC 7616
    /// §3.3), so a retry with the new nonce is expected to succeed.
    pub stale: bool,
}

impl Challenge {
    /// Parses one `WWW-Authenticate` or `Proxy-Authenticate` value.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let auth = Auth::parse(value)?;
        Self::from_auth(&auth)
    }

    /// Interprets a parsed challenge.
    pub fn from_auth(auth: &Auth<'_>) -> Result<Self, DigestError> {
        if !auth.scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest);
        }
        let raw = |name: &str| {
            auth.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| unquote(v).into_owned())
        };
        let realm = raw("realm").ok_or(DigestError::MissingParam { name: "realm" })?;
        let nonce = raw("nonce").ok_or(DigestError::MissingParam { name: "nonce" })?;
        let algorithm = match raw("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm)?,
        };
        // RFC 7616 §3.3: qop is a quoted comma list of options.
        let qop_auth = match raw("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(DigestError::UnsupportedQop);
                }
            }
        };
        let stale = raw("stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Self {
            realm,
            nonce,
            opaque: raw("opaque"),
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The challenge to answer among the values of one response: the topmost one the SBC
    /// supports (RFC 8760 §2.4: servers list their preferred algorithm first).
    pub fn select<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, DigestError> {
        values
            .into_iter()
            .find_map(|v| Self::parse(v).ok())
            .ok_or(DigestError::NoUsableChallenge)
    }

    /// Computes credentials for `method` to `uri`. `nc` is this nonce's use count (starting at
    /// 1) and `cnonce` a fresh client nonce; both matter only with `qop=auth`.
    pub fn respond(
        &self,
        creds: &Credentials,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> Result<DigestResponse, DigestError> {
        if creds
            .realm
            .as_deref()
            .is_some_and(|r| !r.is_empty() && r != self.realm)
        {
            return Err(DigestError::RealmMismatch);
        }
        let alg = self.algorithm;
        // RFC 7616 §3.4.2: A1 = user:realm:pass; for -sess, H(user:realm:pass):nonce:cnonce.
        let mut ha1 = alg.hash(&[&creds.username, &self.realm, creds.password.expose()]);
        if alg.is_sess() {
            ha1 = alg.hash(&[&ha1, &self.nonce, cnonce]);
        }
        // RFC 7616 §3.4.3: A2 = method:uri for qop=auth (and without qop).
        let ha2 = alg.hash(&[method, uri]);
        let nc_hex = format!("{nc:08x}");
        // RFC 7616 §3.4.1; without qop, RFC 2069: H(HA1:nonce:HA2).
        let response = if self.qop_auth {
            alg.hash(&[&ha1, &self.nonce, &nc_hex, cnonce, "auth", &ha2])
        } else {
            alg.hash(&[&ha1, &self.nonce, &ha2])
        };
        let qop = self.qop_auth.then(|| (nc_hex, cnonce.to_owned()));
        Ok(DigestResponse {
            username: creds.username.clone(),
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: uri.to_owned(),
            response,
            algorithm: alg,
            opaque: self.opaque.clone(),
            qop,
        })
    }
}

/// Computed credentials, ready to be written as an `Authorization` or `Proxy-Authorization`
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    /// `username`.
    pub username: String,
    /// `realm` (copied from the challenge).
    pub realm: String,
    /// `nonce` (copied from the challenge).
    pub nonce: String,
    /// `uri`: the Request-URI of the request (RFC 3261 §22.4).
    pub uri: String,
    /// `response`: the hex digest.
    pub response: String,
    /// `algorithm`.
    pub algorithm: Algorithm,
    /// `opaque`, if the challenge had one.
    pub opaque: Option<String>,
    /// With `qop=auth`: the nonce count (8 hex digits) and the client nonce.
    pub qop: Option<(String, String)>,
}

impl DigestResponse {
    /// The header value: `Digest username="…", realm="…", …`.
    pub fn header_value(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push_str("Digest username=");
        quoted(&mut s, &self.username);
        s.push_str(", realm=");
        quoted(&mut s, &self.realm);
        s.push_str(", nonce=");
        quoted(&mut s, &self.nonce);
        s.push_str(", uri=");
        quoted(&mut s, &self.uri);
        s.push_str(", response=");
        quoted(&mut s, &self.response);
        s.push_str(", algorithm=");
        s.push_str(self.algorithm.as_str());
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            quoted(&mut s, o);
        }
        if let Some((nc, cnonce)) = &self.qop {
            // RFC 7616 §3.4: qop and nc are unquoted tokens, cnonce is quoted.
            s.push_str(", qop=auth, nc=");
            s.push_str(nc);
            s.push_str(", cnonce=");
            quoted(&mut s, cnonce);
        }
        s
    }
}

/// Writes a quoted-string, escaping `"` and `\` (RFC 3261 §25.1 quoted-pair).
fn quoted(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // CR and LF cannot appear in a quoted-string at all; drop them rather than let a
        // configured value break the header.
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, pass: &str) -> Credentials {
        Credentials {
            username: user.to_owned(),
            password: Secret::new(pass),
            realm: None,
        }
    }

    /// RFC 2617 §3.5: the "Mufasa" example (MD5, qop=auth).
    #[test]
    fn rfc2617_section_3_5() {
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("valid challenge");
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert!(ch.qop_auth);
        let r = ch
            .respond(
                &creds("Mufasa", "Circle Of Life"),
                "GET",
                "/dir/index.html",
                1,
                "0a4f113b",
            )
            .expect("answerable");
        assert_eq!(r.response, "6629fae49393a05397450978507c4ef1");
        let v = r.header_value();
        assert!(v.contains("nc=00000001"), "{v}");
        assert!(v.contains("cnonce=\"0a4f113b\""), "{v}");
        assert!(
            v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{v}"
        );
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    #[test]
    fn rfc7616_section_3_9_1() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let opaque = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let cases = [
            (
                "SHA-256",
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        ];
        for (name, alg, expected) in cases {
            let ch = Challenge::parse(&format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={name}, nonce=\"{nonce}\", opaque=\"{opaque}\""
            ))
            .expect("valid challenge");
            assert_eq!(ch.algorithm, alg);
            let r = ch
                .respond(
                    &creds("Mufasa", "Circle of Life"),
                    "GET",
                    "/dir/index.html",
                    1,
                    cnonce,
                )
                .expect("answerable");
            assert_eq!(r.response, expected, "{name}");
        }
    }

    /// RFC 2069 form (no qop) and the -sess variants, checked against an independent
    /// computation of the formulas.
    #[test]
    fn no_qop_and_sess() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").expect("valid");
        let r = ch
            .respond(&creds("u", "p"), "INVITE", "sip:x@y", 1, "c")
            .expect("answerable");
        let ha1 = Algorithm::Md5.hash(&["u", "r", "p"]);
        let ha2 = Algorithm::Md5.hash(&["INVITE", "sip:x@y"]);
        assert_eq!(r.response, Algorithm::Md5.hash(&[&ha1, "n", &ha2]));
        assert!(!r.header_value().contains("qop"));

        let ch = Challenge::parse(
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth\", algorithm=sha-256-SESS",
        )
        .expect("valid");
        assert_eq!(ch.algorithm, Algorithm::Sha256Sess);
        let r = ch
            .respond(&creds("u", "p"), "INVITE", "sip:x@y", 2, "c")
            .expect("answerable");
        let a = Algorithm::Sha256;
        let ha1 = a.hash(&[&a.hash(&["u", "r", "p"]), "n", "c"]);
        let ha2 = a.hash(&["INVITE", "sip:x@y"]);
        assert_eq!(
            r.response,
            a.hash(&[&ha1, "n", "00000002", "c", "auth", &ha2])
        );
        assert!(r.header_value().contains("algorithm=SHA-256-sess"));
    }

    #[test]
    fn rejects() {
        let cases: [(&str, DigestError); 5] = [
            ("Basic realm=\"r\"", DigestError::NotDigest),
            (
                "Digest nonce=\"n\"",
                DigestError::MissingParam { name: "realm" },
            ),
            (
                "Digest realm=\"r\"",
                DigestError::MissingParam { name: "nonce" },
            ),
            (
                "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
                DigestError::UnsupportedAlgorithm,
            ),
            (
                "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
                DigestError::UnsupportedQop,
            ),
        ];
        for (v, e) in cases {
            assert_eq!(Challenge::parse(v), Err(e), "{v}");
        }
        assert!(matches!(
            Challenge::parse("Digest realm=\"r"),
            Err(DigestError::Malformed(_))
        ));
    }

    #[test]
    fn selection_stale_realm_and_quoting() {
        // RFC 8760 §2.4: topmost supported wins; an unsupported one above it is skipped.
        let ch = Challenge::select([
            "Digest realm=\"r\", nonce=\"a\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"b\", algorithm=SHA-256, stale=TRUE",
            "Digest realm=\"r\", nonce=\"c\", algorithm=MD5",
        ])
        .expect("one usable");
        assert_eq!(
            (ch.nonce.as_str(), ch.algorithm, ch.stale),
            ("b", Algorithm::Sha256, true)
        );
        assert_eq!(
            Challenge::select(["Basic realm=\"x\""]),
            Err(DigestError::NoUsableChallenge)
        );

        let mut c = creds("a\"b", "p");
        c.realm = Some("other".to_owned());
        assert_eq!(
            ch.respond(&c, "INVITE", "sip:x", 1, "c"),
            Err(DigestError::RealmMismatch)
        );
        c.realm = Some("r".to_owned());
        let v = ch
            .respond(&c, "INVITE", "sip:x", 1, "c")
            .expect("ok")
            .header_value();
        assert!(v.starts_with("Digest username=\"a\\\"b\""), "{v}");
        // What we write parses back with the SBC's own parser.
        let parsed = Auth::parse(&v).expect("own output parses");
        assert_eq!(parsed.param("algorithm"), Some("SHA-256"));
        assert_eq!(parsed.param("uri"), Some("sip:x"));
        assert_eq!(format!("{:?}", c.password), "Secret(***)");
    }
}
