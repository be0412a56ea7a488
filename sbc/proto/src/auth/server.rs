//! Server-side digest authentication (RFC 3261 §22.3, RFC 7616 §3.3–3.5, RFC 8760): the SBC
//! challenges a peer's requests and verifies the credentials it sends back.
//!
//! Nonces are stateless-verifiable: `nonce = hex(issued) ‖ hex(salt) ‖ mac`, where `issued` is
//! the milliseconds since the verifier's epoch, `salt` a random value from the caller, and `mac`
//! the first 128 bits of HMAC-SHA-256 (RFC 2104) over both under a per-process key. Any nonce
//! the SBC issued can be checked without remembering it; a forged or altered one fails the MAC.
//! Only nonces that were actually *used* are remembered, with their highest nonce count, so a
//! replayed request (same or lower `nc`) is caught. That table is bounded: when it is full the
//! oldest entry is dropped and every nonce issued up to it is treated as stale from then on, so
//! forgetting an entry can never let its replay through.
//!
//! Time comes in as `now` (sans-I/O); the epoch is an `Instant` given at construction.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};

use super::digest::{Algorithm, Secret};
use crate::sip::{Auth, HeaderError, unquote};

/// How long a nonce stays valid after it was issued (RFC 7616 §5.5 leaves the choice to the
/// server; five minutes covers a ringing phase and a retry, and bounds replays).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Most nonces whose use count is remembered at once.
pub const MAX_TRACKED_NONCES: usize = 4096;

/// Hex digits of the issue time, the salt and the MAC in a nonce.
const ISSUED_HEX: usize = 12;
const SALT_HEX: usize = 16;
const MAC_HEX: usize = 32;
const NONCE_LEN: usize = ISSUED_HEX + SALT_HEX + MAC_HEX;

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The header value does not parse as `scheme params` (RFC 3261 §25.1).
    #[error("malformed credentials: {0}")]
    Malformed(#[from] HeaderError),
    /// The scheme is not `Digest`.
    #[error("unsupported scheme")]
    NotDigest,
    /// A parameter the verification needs is absent.
    #[error("credentials without {name}")]
    MissingParam {
        /// The parameter's name.
        name: &'static str,
    },
    /// An `algorithm` that was not offered.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// No `qop=auth`: the SBC always offers it, and without it replays cannot be detected
    /// (RFC 7616 §3.4: a client MUST use the qop the server offered).
    #[error("qop=auth required")]
    QopRequired,
    /// `nc` is not 8 hex digits (RFC 7616 §3.4).
    #[error("bad nonce count")]
    BadNonceCount,
    /// Another user name.
    #[error("unknown user")]
    UnknownUser,
    /// Another realm.
    #[error("realm mismatch")]
    RealmMismatch,
    /// `uri` differs from the Request-URI (RFC 7616 §3.4.6 / RFC 2617 §3.2.2.5).
    #[error("uri does not match the Request-URI")]
    UriMismatch,
    /// The digest does not match: wrong password (or a tampered request).
    #[error("wrong response")]
    WrongResponse,
    /// The response is right but the nonce was not issued by this SBC (or not by this process:
    /// the key changes on restart), or was issued before the replay table forgot it.
    #[error("unknown nonce")]
    UnknownNonce,
    /// The response is right but the nonce is older than its lifetime.
    #[error("nonce expired")]
    NonceExpired,
    /// The response is right but the nonce count did not grow: a replay (or reordering).
    #[error("nonce count replayed")]
    Replayed,
}

impl AuthError {
    /// The credentials were right and only the nonce cannot be used (any more): the new
    /// challenge says `stale=true` so the client retries without asking its user (RFC 7616
    /// §3.3). A replayed request is answered the same way: whoever replays it cannot compute
    /// the response to the fresh nonce.
    pub const fn is_stale(&self) -> bool {
        matches!(
            self,
            Self::UnknownNonce | Self::NonceExpired | Self::Replayed
        )
    }
}

/// Digest credentials as sent in `Authorization` / `Proxy-Authorization` (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    /// `username`, unquoted.
    pub username: String,
    /// `realm`, unquoted.
    pub realm: String,
    /// `nonce`, unquoted.
    pub nonce: String,
    /// `uri`, unquoted.
    pub uri: String,
    /// `response`, unquoted (hex).
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop`, if present.
    pub qop: Option<String>,
    /// `nc`, as written.
    pub nc: Option<String>,
    /// `cnonce`, unquoted.
    pub cnonce: Option<String>,
}

impl DigestCredentials {
    /// Parses one credentials header value.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        Self::from_auth(&Auth::parse(value)?)
    }

    /// Interprets parsed credentials.
    pub fn from_auth(auth: &Auth<'_>) -> Result<Self, AuthError> {
        if !auth.scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest);
        }
        let raw = |name: &str| {
            auth.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| unquote(v).into_owned())
        };
        let need = |name: &'static str| raw(name).ok_or(AuthError::MissingParam { name });
        let algorithm = match raw("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(AuthError::UnsupportedAlgorithm)?,
        };
        Ok(Self {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response: need("response")?,
            algorithm,
            qop: raw("qop"),
            nc: raw("nc"),
            cnonce: raw("cnonce"),
        })
    }
}

/// The SBC as a digest server for one account (the PBX): issues nonces, writes challenges and
/// verifies credentials.
#[derive(Debug, Clone)]
pub struct DigestServer {
    username: String,
    password: Secret,
    realm: String,
    algorithms: Vec<Algorithm>,
    key: [u8; 32],
    epoch: Instant,
    /// Highest accepted nonce count per used nonce, keyed by (issue time, nonce) so the oldest
    /// is first.
    used: BTreeMap<(u64, String), u32>,
    /// Nonces issued at or before this time (ms since the epoch) are no longer usable: their
    /// use counts may have been forgotten.
    floor: Option<u64>,
}

impl DigestServer {
    /// A server for `username`/`password` in `realm`, offering `algorithms` in that order of
    /// preference (RFC 8760 §2.4). `key` authenticates nonces; `epoch` is the time nonce ages
    /// are counted from.
    pub fn new(
        username: impl Into<String>,
        password: Secret,
        realm: impl Into<String>,
        algorithms: Vec<Algorithm>,
        key: [u8; 32],
        epoch: Instant,
    ) -> Self {
        Self {
            username: username.into(),
            password,
            realm: realm.into(),
            algorithms,
            key,
            epoch,
            used: BTreeMap::new(),
            floor: None,
        }
    }

    /// The realm challenges name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Whether this server was built for the same account, realm and algorithms (a reload
    /// with the same values keeps nonces and replay state).
    pub fn same_account(
        &self,
        username: &str,
        password: &Secret,
        realm: &str,
        algorithms: &[Algorithm],
    ) -> bool {
        self.username == username
            && self.password == *password
            && self.realm == realm
            && self.algorithms == algorithms
    }

    /// Number of nonces whose use count is remembered.
    pub fn tracked(&self) -> usize {
        self.used.len()
    }

    /// A fresh nonce issued at `now`; `salt` must be random (it makes nonces issued in the
    /// same millisecond differ).
    pub fn nonce(&self, now: Instant, salt: u64) -> String {
        let issued = self.millis(now);
        let mut n = String::with_capacity(NONCE_LEN);
        let _ = write!(n, "{issued:012x}{salt:016x}");
        let mac = self.mac(n.as_bytes());
        n.push_str(&mac);
        n
    }

    /// The challenge values for a `Proxy-Authenticate` / `WWW-Authenticate` header each, in
    /// order of preference, all with `nonce` and `qop="auth"`; `stale` adds `stale=true`.
    pub fn challenges(&self, nonce: &str, stale: bool) -> Vec<String> {
        self.algorithms
            .iter()
            .map(|a| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    escape(&self.realm),
                    a.as_str()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Checks everything that does not depend on the nonce's state: user, realm, algorithm,
    /// qop, nc syntax, that `uri` is the Request-URI `uri`, and the response digest for
    /// `method` (compared in constant time).
    pub fn check(
        &self,
        creds: &DigestCredentials,
        method: &str,
        uri: &str,
    ) -> Result<(), AuthError> {
        if !self.algorithms.contains(&creds.algorithm) {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        if !creds
            .qop
            .as_deref()
            .is_some_and(|q| q.eq_ignore_ascii_case("auth"))
        {
            return Err(AuthError::QopRequired);
        }
        let nc = creds
            .nc
            .as_deref()
            .ok_or(AuthError::MissingParam { name: "nc" })?;
        parse_nc(nc)?;
        let cnonce = creds
            .cnonce
            .as_deref()
            .ok_or(AuthError::MissingParam { name: "cnonce" })?;
        if creds.username != self.username {
            return Err(AuthError::UnknownUser);
        }
        if creds.realm != self.realm {
            return Err(AuthError::RealmMismatch);
        }
        if creds.uri != uri {
            return Err(AuthError::UriMismatch);
        }
        let alg = creds.algorithm;
        // RFC 7616 §3.4.1–3.4.3 with qop=auth; the literal nc string is hashed, as sent.
        let ha1 = alg.hash(&[&self.username, &self.realm, self.password.expose()]);
        let ha2 = alg.hash(&[method, uri]);
        let expected = alg.hash(&[&ha1, &creds.nonce, nc, cnonce, "auth", &ha2]);
        // Hex digits are case-insensitive; our hash is lower case.
        let got = creds.response.to_ascii_lowercase();
        if constant_time_eq(expected.as_bytes(), got.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::WrongResponse)
        }
    }

    /// Verifies credentials for a request with `method` and Request-URI `uri` at `now`:
    /// [`check`](Self::check), then the nonce (issued by us, not expired, nonce count
    /// growing). On success the nonce count is remembered.
    pub fn verify(
        &mut self,
        now: Instant,
        creds: &DigestCredentials,
        method: &str,
        uri: &str,
    ) -> Result<(), AuthError> {
        self.check(creds, method, uri)?;
        let nc = creds.nc.as_deref().map_or(Ok(0), parse_nc)?;
        let issued = self.issued(&creds.nonce).ok_or(AuthError::UnknownNonce)?;
        let age = self.millis(now).saturating_sub(issued);
        if Duration::from_millis(age) > NONCE_LIFETIME {
            return Err(AuthError::NonceExpired);
        }
        if self.floor.is_some_and(|f| issued <= f) {
            return Err(AuthError::UnknownNonce);
        }
        self.expire(now);
        let entry = (issued, creds.nonce.clone());
        match self.used.get_mut(&entry) {
            Some(last) if nc <= *last => return Err(AuthError::Replayed),
            Some(last) => *last = nc,
            None => {
                if self.used.len() >= MAX_TRACKED_NONCES
                    && let Some(((oldest, _), _)) = self.used.pop_first()
                {
                    self.floor = Some(self.floor.map_or(oldest, |f| f.max(oldest)));
                    if issued <= oldest {
                        return Err(AuthError::UnknownNonce);
                    }
                }
                self.used.insert(entry, nc);
            }
        }
        Ok(())
    }

    /// Forgets the use counts of nonces that expired (they are refused by age anyway).
    fn expire(&mut self, now: Instant) {
        let lifetime = u64::try_from(NONCE_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let cutoff = self.millis(now).saturating_sub(lifetime);
        while self
            .used
            .first_key_value()
            .is_some_and(|((t, _), _)| *t < cutoff)
        {
            self.used.pop_first();
        }
    }

    /// The issue time of a nonce this server made, or None for anything else.
    fn issued(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return None;
        }
        let (data, mac) = nonce.split_at(ISSUED_HEX + SALT_HEX);
        if !constant_time_eq(self.mac(data.as_bytes()).as_bytes(), mac.as_bytes()) {
            return None;
        }
        u64::from_str_radix(data.get(..ISSUED_HEX)?, 16).ok()
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Truncated HMAC-SHA-256 (RFC 2104) of `data` under the key, as hex.
    fn mac(&self, data: &[u8]) -> String {
        let mut block = [0u8; 64];
        block[..self.key.len()].copy_from_slice(&self.key);
        let pad = |b: u8| block.map(|k| k ^ b);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(data)
            .finalize();
        let outer = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        let mut s = String::with_capacity(MAC_HEX);
        for b in outer.iter().take(MAC_HEX / 2) {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// Parses `nc`: exactly 8 hex digits (RFC 7616 §3.4).
fn parse_nc(nc: &str) -> Result<u32, AuthError> {
    if nc.len() != 8 {
        return Err(AuthError::BadNonceCount);
    }
    u32::from_str_radix(nc, 16).map_err(|_| AuthError::BadNonceCount)
}

/// Equality whose time does not depend on where the inputs differ (only on their lengths,
/// which are public: 32 or 64 hex digits), so the response cannot be guessed byte by byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Escapes `"` and `\` for a quoted-string (RFC 3261 §25.1) and drops CR/LF.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars().filter(|c| *c != '\r' && *c != '\n') {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Challenge, Credentials};

    const REALM: &str = "sbc.example";

    fn t0() -> Instant {
        crate::test_origin()
    }

    fn server(epoch: Instant) -> DigestServer {
        DigestServer::new(
            "pbx",
            Secret::new("pbx-secret"),
            REALM,
            vec![Algorithm::Sha256, Algorithm::Md5],
            [7; 32],
            epoch,
        )
    }

    /// What a client computes for the challenge `value` (the client side of this crate).
    fn answer(value: &str, pass: &str, uri: &str, nc: u32) -> DigestCredentials {
        let ch = Challenge::parse(value).expect("our challenge parses");
        let r = ch
            .respond(
                &Credentials {
                    username: "pbx".into(),
                    password: Secret::new(pass),
                    realm: None,
                },
                "INVITE",
                uri,
                nc,
                "c0ffee",
            )
            .expect("answerable");
        DigestCredentials::parse(&r.header_value()).expect("credentials parse")
    }

    const URI: &str = "sip:15551234567@10.0.0.1:5060";

    /// RFC 7616 §3.9.1: the exact Authorization headers of the example are accepted by the
    /// nonce-independent check (the vector's nonce was not issued by us, so full verification
    /// answers stale: the response is right, the nonce is not ours).
    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let cases = [
            (
                "SHA-256",
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        ];
        for (name, alg, response) in cases {
            let header = format!(
                "Digest username=\"Mufasa\",\r\n realm=\"http-auth@example.org\",\r\n \
                 uri=\"/dir/index.html\",\r\n algorithm={name},\r\n \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n nc=00000001,\r\n \
                 cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n qop=auth,\r\n \
                 response=\"{response}\",\r\n \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            );
            let creds = DigestCredentials::parse(&header).expect("RFC example parses");
            assert_eq!(creds.algorithm, alg);
            let epoch = t0();
            let mut s = DigestServer::new(
                "Mufasa",
                Secret::new("Circle of Life"),
                "http-auth@example.org",
                vec![alg],
                [1; 32],
                epoch,
            );
            assert_eq!(s.check(&creds, "GET", "/dir/index.html"), Ok(()), "{name}");
            let err = s.verify(epoch, &creds, "GET", "/dir/index.html");
            assert_eq!(err, Err(AuthError::UnknownNonce), "{name}");
            assert!(err.is_err_and(|e| e.is_stale()));
            // One changed digit of the password is a failure, not stale.
            let mut wrong = s.clone();
            wrong.password = Secret::new("Circle of life");
            assert_eq!(
                wrong.check(&creds, "GET", "/dir/index.html"),
                Err(AuthError::WrongResponse)
            );
        }
    }

    #[test]
    fn challenge_answer_accept_in_both_algorithms_then_replay_is_stale() {
        let epoch = t0();
        let mut s = server(epoch);
        let nonce = s.nonce(epoch, 42);
        assert_eq!(nonce.len(), NONCE_LEN);
        let ch = s.challenges(&nonce, false);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("algorithm=SHA-256"), "{}", ch[0]);
        assert!(ch[1].contains("algorithm=MD5"), "{}", ch[1]);
        assert!(ch.iter().all(|c| c.contains("qop=\"auth\"")));
        for (i, c) in ch.iter().enumerate() {
            let nc = u32::try_from(i).expect("small") + 1;
            let creds = answer(c, "pbx-secret", URI, nc);
            let at = epoch + Duration::from_secs(1);
            assert_eq!(s.verify(at, &creds, "INVITE", URI), Ok(()), "{c}");
            // The same request again (same nc): a replay.
            assert_eq!(
                s.verify(at, &creds, "INVITE", URI),
                Err(AuthError::Replayed)
            );
        }
        assert_eq!(s.tracked(), 1, "one nonce used twice");
    }

    #[test]
    fn negatives() {
        let epoch = t0();
        let mut s = server(epoch);
        let nonce = s.nonce(epoch, 1);
        let ch = s.challenges(&nonce, false).remove(0);
        let at = epoch + Duration::from_secs(2);

        let wrong_pw = answer(&ch, "guess", URI, 1);
        assert_eq!(
            s.verify(at, &wrong_pw, "INVITE", URI),
            Err(AuthError::WrongResponse)
        );
        let good = answer(&ch, "pbx-secret", URI, 1);
        assert_eq!(
            s.verify(at, &good, "INVITE", "sip:other@10.0.0.1"),
            Err(AuthError::UriMismatch)
        );
        let mut other_realm = good.clone();
        other_realm.realm = "elsewhere".into();
        assert_eq!(
            s.verify(at, &other_realm, "INVITE", URI),
            Err(AuthError::RealmMismatch)
        );
        let mut other_user = good.clone();
        other_user.username = "admin".into();
        assert_eq!(
            s.verify(at, &other_user, "INVITE", URI),
            Err(AuthError::UnknownUser)
        );
        // Method is part of A2: credentials for INVITE do not work for MESSAGE.
        assert_eq!(
            s.verify(at, &good, "MESSAGE", URI),
            Err(AuthError::WrongResponse)
        );
        let mut no_qop = good.clone();
        no_qop.qop = None;
        assert_eq!(
            s.verify(at, &no_qop, "INVITE", URI),
            Err(AuthError::QopRequired)
        );
        let mut bad_nc = good.clone();
        bad_nc.nc = Some("1".into());
        assert_eq!(
            s.verify(at, &bad_nc, "INVITE", URI),
            Err(AuthError::BadNonceCount)
        );
        let mut sess = good.clone();
        sess.algorithm = Algorithm::Md5Sess;
        assert_eq!(
            s.verify(at, &sess, "INVITE", URI),
            Err(AuthError::UnsupportedAlgorithm)
        );
        // A nonce with one digit changed fails its MAC: unknown (stale if the digest is right).
        let mut forged = nonce.clone().into_bytes();
        forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).expect("ascii");
        let forged_ch = s.challenges(&forged, false).remove(0);
        let creds = answer(&forged_ch, "pbx-secret", URI, 1);
        assert_eq!(
            s.verify(at, &creds, "INVITE", URI),
            Err(AuthError::UnknownNonce)
        );
        // Nothing above was remembered; the good one still works.
        assert_eq!(s.verify(at, &good, "INVITE", URI), Ok(()));
        // Replay with a lower nc after a higher one.
        let nc3 = answer(&ch, "pbx-secret", URI, 3);
        assert_eq!(s.verify(at, &nc3, "INVITE", URI), Ok(()));
        let nc2 = answer(&ch, "pbx-secret", URI, 2);
        assert_eq!(s.verify(at, &nc2, "INVITE", URI), Err(AuthError::Replayed));

        for (header, err) in [
            (
                "Basic dXNlcjpwYXNz",
                AuthError::Malformed(HeaderError::BadParam),
            ),
            ("Basic realm=\"x\"", AuthError::NotDigest),
            (
                "Digest realm=\"x\", nonce=\"n\"",
                AuthError::MissingParam { name: "username" },
            ),
            (
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"r\", \
                 algorithm=SHA-512",
                AuthError::UnsupportedAlgorithm,
            ),
        ] {
            let got = DigestCredentials::parse(header);
            match (&got, &err) {
                (Err(AuthError::Malformed(_)), AuthError::Malformed(_)) => {}
                _ => assert_eq!(got, Err(err), "{header}"),
            }
        }
    }

    #[test]
    fn expired_nonce_with_right_password_is_stale_and_wrong_password_is_not() {
        let epoch = t0();
        let mut s = server(epoch);
        let nonce = s.nonce(epoch + Duration::from_secs(10), 9);
        let ch = s.challenges(&nonce, false).remove(1);
        let late = epoch + Duration::from_secs(10) + NONCE_LIFETIME + Duration::from_secs(1);
        let good = answer(&ch, "pbx-secret", URI, 1);
        let err = s.verify(late, &good, "INVITE", URI);
        assert_eq!(err, Err(AuthError::NonceExpired));
        assert!(err.is_err_and(|e| e.is_stale()));
        let bad = answer(&ch, "nope", URI, 1);
        let err = s.verify(late, &bad, "INVITE", URI);
        assert_eq!(err, Err(AuthError::WrongResponse));
        assert!(err.is_err_and(|e| !e.is_stale()));
        // Just inside the lifetime it is accepted.
        let ok_at = epoch + Duration::from_secs(10) + NONCE_LIFETIME;
        assert_eq!(s.verify(ok_at, &good, "INVITE", URI), Ok(()));
        let stale = s.challenges(&nonce, true);
        assert!(stale.iter().all(|c| c.ends_with(", stale=true")));
        assert!(Challenge::parse(&stale[0]).is_ok_and(|c| c.stale));
    }

    #[test]
    fn replay_table_is_bounded_and_forgotten_nonces_turn_stale() {
        let epoch = t0();
        let mut s = server(epoch);
        let first = s.nonce(epoch, 0);
        let first_creds = answer(&s.challenges(&first, false)[0], "pbx-secret", URI, 1);
        assert_eq!(s.verify(epoch, &first_creds, "INVITE", URI), Ok(()));
        let mut at = epoch;
        for i in 1..=u64::try_from(MAX_TRACKED_NONCES).expect("fits") {
            at += Duration::from_millis(1);
            let n = s.nonce(at, i);
            let c = answer(&s.challenges(&n, false)[1], "pbx-secret", URI, 1);
            assert_eq!(s.verify(at, &c, "INVITE", URI), Ok(()));
        }
        assert_eq!(s.tracked(), MAX_TRACKED_NONCES);
        // The first nonce was evicted; its replay is not accepted.
        let again = answer(&s.challenges(&first, false)[0], "pbx-secret", URI, 2);
        assert_eq!(
            s.verify(at, &again, "INVITE", URI),
            Err(AuthError::UnknownNonce)
        );
        // Expired entries are dropped on the next verification.
        let later = at + NONCE_LIFETIME + Duration::from_secs(1);
        let n = s.nonce(later, 99_999);
        let c = answer(&s.challenges(&n, false)[0], "pbx-secret", URI, 1);
        assert_eq!(s.verify(later, &c, "INVITE", URI), Ok(()));
        assert_eq!(s.tracked(), 1);
    }

    #[test]
    fn realm_is_quoted_safely() {
        let s = DigestServer::new(
            "u",
            Secret::new("p"),
            "a\"b\r\n",
            vec![Algorithm::Md5],
            [0; 32],
            t0(),
        );
        let c = s.challenges("n", false).remove(0);
        assert!(c.starts_with("Digest realm=\"a\\\"b\""), "{c}");
        assert_eq!(Challenge::parse(&c).map(|c| c.realm), Ok("a\"b".to_owned()));
    }
}
