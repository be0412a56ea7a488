//! Digest credentials (RFC 7616) as the SBC meets them: arbitrary `Authorization` /
//! `Proxy-Authorization` values against the server-side verifier, arbitrary challenges through
//! the client side, and a client/server round trip that must verify exactly once per nonce
//! count.

use std::time::{Duration, Instant};

use crate::auth::{
    Algorithm, AuthError, Challenge, Credentials, DigestCredentials, DigestServer, Secret,
};

const USER: &str = "pbx";
const PASSWORD: &str = "fuzz-secret";
const REALM: &str = "sbc.fuzz";

/// Input: up to four lines — a header value, a method, a Request-URI and a client nonce.
///
/// - The value, as credentials, never verifies against a fresh server: that would need a nonce
///   carrying this process's MAC and the digest of a password the input does not know.
/// - The value, as a challenge, yields credentials whose header value parses back to the same
///   fields (no quoting mistake can smuggle a parameter or a header).
/// - The server's own challenge, answered by the client side for the given method, URI and
///   client nonce, verifies once, is refused as a replay when sent again, and verifies again
///   with the next nonce count.
pub fn digest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let value = lines.next().unwrap_or_default();
    let method = lines.next().unwrap_or("INVITE");
    let uri = lines.next().unwrap_or("sip:100@sbc.fuzz");
    let cnonce = lines.next().unwrap_or("0a4f113b");

    // The epoch is the only clock reading; everything after it is an offset.
    #[allow(
        clippy::disallowed_methods,
        reason = "fuzzing entry point: an origin for simulated time"
    )]
    let epoch = Instant::now();
    let mut server = DigestServer::new(
        USER,
        Secret::new(PASSWORD),
        REALM,
        vec![Algorithm::Sha256, Algorithm::Md5],
        [7; 32],
        epoch,
    );
    let at = |s: u64| epoch + Duration::from_secs(s);

    if let Ok(creds) = DigestCredentials::parse(value) {
        let r = server.verify(at(1), &creds, method, uri);
        assert!(r.is_err(), "forged credentials verified: {creds:?}");
    }

    let account = Credentials {
        username: USER.into(),
        password: Secret::new(PASSWORD),
        realm: None,
    };
    if let Ok(challenge) = Challenge::parse(value)
        && let Ok(resp) = challenge.respond(&account, method, uri, 1, cnonce)
        && printable(method)
        && printable(uri)
        && printable(cnonce)
        && printable(&challenge.realm)
        && printable(&challenge.nonce)
    {
        let header = resp.header_value();
        let back = DigestCredentials::parse(&header)
            .unwrap_or_else(|e| panic!("our credentials do not parse back ({e}): {header}"));
        assert_eq!(
            (
                &back.username,
                &back.realm,
                &back.nonce,
                &back.uri,
                &back.response
            ),
            (
                &resp.username,
                &resp.realm,
                &resp.nonce,
                &resp.uri,
                &resp.response
            ),
            "credentials changed in writing: {header}"
        );
    }

    // The round trip needs values a header can carry unchanged.
    if !(printable(method) && printable(uri) && printable(cnonce)) || method.is_empty() {
        return;
    }
    // One nonce per offered algorithm (a nonce's use count is shared by its algorithms), each
    // later than the last so time never goes back.
    let offers = server.challenges("-", false).len();
    for i in 0..offers {
        let base = 1000 * (i as u64 + 1);
        let nonce = server.nonce(at(base), 0x5eed + i as u64);
        let offered = server.challenges(&nonce, false).swap_remove(i);
        let challenge = Challenge::parse(&offered).expect("our own challenge parses");
        let mut verify = |nc: u32, now: u64| -> Result<(), AuthError> {
            let resp = challenge
                .respond(&account, method, uri, nc, cnonce)
                .expect("no realm restriction");
            let creds =
                DigestCredentials::parse(&resp.header_value()).expect("our own credentials parse");
            server.verify(at(base + now), &creds, method, uri)
        };
        assert_eq!(verify(1, 1), Ok(()), "right credentials refused: {offered}");
        assert_eq!(verify(1, 2), Err(AuthError::Replayed), "replay accepted");
        assert_eq!(verify(2, 3), Ok(()), "next nonce count refused");
        assert_eq!(
            verify(3, 301),
            Err(AuthError::NonceExpired),
            "old nonce accepted"
        );
    }
}

/// Printable ASCII other than the quote and the backslash (which a quoted-string escapes).
fn printable(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}
