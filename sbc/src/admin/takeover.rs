//! `POST /api/v1/state/takeover`: this node of an active/standby pair takes over the peer's
//! calls (keepalived's `notify_master` calls it when the virtual address arrives here;
//! `docs/scaling.md`).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};

use super::{AdminState, error::ApiError};
use crate::state::pair::{Takeover, TakeoverError};

/// Claims the peer's records and restores its calls; answers what was done.
pub async fn takeover(State(s): State<Arc<AdminState>>) -> Result<Json<Takeover>, ApiError> {
    let Some(pair) = &s.pair else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not a node of a pair: [state] peer is not set",
        ));
    };
    pair.takeover().await.map(Json).map_err(|e| {
        tracing::error!(error = %e, "takeover failed");
        let status = match e {
            TakeoverError::Load(_) => StatusCode::SERVICE_UNAVAILABLE,
            TakeoverError::SignalingGone => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    })
}
