//! Bearer-token authentication of the admin API.
//!
//! Two roles: the admin token may read and write, the read token may only read (any method
//! but GET/HEAD gets 403). Tokens come from `[admin] token`/`read_token` and from the
//! environment (`SBC_ADMIN_TOKEN`, `SBC_ADMIN_READ_TOKEN`). With no token at all the API is
//! open; `daemon::run` only allows that on a loopback listen address (and warns), so the
//! shipped loopback default stays usable by `curl` and the tests without a secret.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{AdminState, error::ApiError};
use crate::config::Config;

/// Environment variable holding an admin (read-write) token.
pub const ENV_TOKEN: &str = "SBC_ADMIN_TOKEN";
/// Environment variable holding a read-only token.
pub const ENV_READ_TOKEN: &str = "SBC_ADMIN_READ_TOKEN";

/// Tokens taken from the environment at start (they do not change while running).
#[derive(Debug, Clone, Default)]
pub struct EnvTokens {
    admin: Option<String>,
    read: Option<String>,
}

impl EnvTokens {
    /// Reads the environment; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            admin: var(ENV_TOKEN),
            read: var(ENV_READ_TOKEN),
        }
    }

    /// Whether any token (environment or `config`) is configured.
    pub fn any(&self, config: &Config) -> bool {
        self.admin.is_some()
            || self.read.is_some()
            || config.admin.token.is_some()
            || config.admin.read_token.is_some()
    }
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Read,
}

/// Compares in time that depends only on the lengths, so a wrong guess learns nothing from
/// how long the comparison took.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x);
    }
    diff == 0
}

fn role(presented: &[u8], config: &Config, env: &EnvTokens) -> Option<Role> {
    // Every candidate is compared (no early exit), for the same reason as `ct_eq`.
    let mut admin = false;
    let mut read = false;
    for t in [&config.admin.token, &env.admin].into_iter().flatten() {
        admin |= ct_eq(presented, t.as_bytes());
    }
    for t in [&config.admin.read_token, &env.read].into_iter().flatten() {
        read |= ct_eq(presented, t.as_bytes());
    }
    if admin {
        Some(Role::Admin)
    } else if read {
        Some(Role::Read)
    } else {
        None
    }
}

/// The middleware: `/healthz` is always open; everything else needs a token once any is
/// configured.
pub async fn check(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let config = s.config.current();
    if !s.config.env_tokens().any(&config) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    let Some(role) = presented.and_then(|p| role(p, &config, s.config.env_tokens())) else {
        let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"sbc\""),
        );
        return resp;
    };
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    if role == Role::Read && !read_only {
        return ApiError::new(StatusCode::FORBIDDEN, "this token may only read").into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare_is_exact() {
        assert!(ct_eq(b"abcdefgh", b"abcdefgh"));
        assert!(!ct_eq(b"abcdefgh", b"abcdefgi"));
        assert!(!ct_eq(b"abcdefgh", b"abcdefg"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn roles_from_config_and_environment() {
        let mut c = crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default");
        c.admin.token = Some("admin-token-0123456789".into());
        c.admin.read_token = Some("read-token-0123456789".into());
        let env = EnvTokens {
            admin: Some("env-admin-token-012345".into()),
            read: None,
        };
        assert_eq!(role(b"admin-token-0123456789", &c, &env), Some(Role::Admin));
        assert_eq!(role(b"env-admin-token-012345", &c, &env), Some(Role::Admin));
        assert_eq!(role(b"read-token-0123456789", &c, &env), Some(Role::Read));
        assert_eq!(role(b"read-token-012345678", &c, &env), None);
        assert!(env.any(&c));
        assert!(
            !EnvTokens::default()
                .any(&crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default"))
        );
    }
}
