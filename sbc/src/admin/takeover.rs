//! `POST /api/v1/state/takeover`: this node of an active/standby pair takes over the peer's
//! calls (keepalived's `notify_master` calls it when the virtual address arrives here;
//! `docs/scaling.md`).
//!
//! It moves a live node's calls, so it is guarded beyond the admin token: with `[state]
//! takeover_token` the request must also carry `X-Takeover-Token` (403 otherwise), and a peer
//! that still has calls and a fresh heartbeat is not taken over (409) unless `?force=true`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
};

use super::{AdminState, error::ApiError};
use crate::state::pair::{Takeover, TakeoverError};

/// The header carrying `[state] takeover_token`.
pub const TOKEN_HEADER: &str = "x-takeover-token";

/// `?force=true`: take over even a peer that looks alive (an operator's decision).
#[derive(Debug, Default, serde::Deserialize)]
pub struct TakeoverQuery {
    #[serde(default)]
    force: bool,
}

/// Claims the peer's records and restores its calls; answers what was done.
pub async fn takeover(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(q): Query<TakeoverQuery>,
) -> Result<Json<Takeover>, ApiError> {
    let Some(pair) = &s.pair else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not a node of a pair: [state] peer is not set",
        ));
    };
    let config = s.config.current();
    let expected = config
        .state
        .as_ref()
        .and_then(|st| st.takeover_token.as_ref());
    let presented = headers.get(TOKEN_HEADER).map(|v| v.as_bytes().trim_ascii());
    if !authorized(presented, expected.map(|t| t.0.as_bytes())) {
        pair.count_unauthorized();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "takeover needs the X-Takeover-Token header ([state] takeover_token)",
        ));
    }
    pair.takeover(q.force).await.map(Json).map_err(|e| {
        tracing::error!(error = %e, "takeover failed");
        let status = match e {
            TakeoverError::PeerAlive(..) => StatusCode::CONFLICT,
            TakeoverError::Load(_) | TakeoverError::SignalingGone => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError::new(status, e.to_string())
    })
}

/// Whether the request may take over: always without a configured token, else only with it.
fn authorized(presented: Option<&[u8]>, expected: Option<&[u8]>) -> bool {
    match expected {
        None => true,
        Some(t) => presented.is_some_and(|p| super::auth::ct_eq(p, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_token_must_be_presented_exactly() {
        let t = b"t4keover-s3cret-0123".as_slice();
        assert!(
            authorized(None, None),
            "no token configured: the admin token suffices"
        );
        assert!(authorized(Some(b"anything"), None));
        assert!(!authorized(None, Some(t)), "missing");
        assert!(!authorized(Some(b"t4keover-s3cret-012"), Some(t)), "prefix");
        assert!(
            !authorized(Some(b"t4keover-s3cret-01234"), Some(t)),
            "longer"
        );
        assert!(authorized(Some(t), Some(t)));
    }
}
