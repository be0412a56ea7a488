//! `POST /api/v1/drain` and `GET /api/v1/status`: the graceful drain from the admin API (the
//! same as SIGTERM: new calls refused, calls in progress go on for `[general]
//! drain_timeout_s`, then BYE, registrations removed, the process exits 0) and the state it
//! is in.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{AdminState, error::ApiError};
use crate::signaling::StatusView;

fn signaling_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the signaling task is not running (stopping)",
    )
}

/// The answer to `POST /api/v1/drain`.
#[derive(Debug, Serialize)]
struct DrainStarted {
    /// False when a drain was already under way (its timeout stays).
    started: bool,
    #[serde(flatten)]
    status: StatusView,
}

/// `POST /api/v1/drain`: starts draining with the running `[general] drain_*` settings.
pub async fn drain(State(s): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    let cfg = crate::config::drain_config(&s.config.current());
    let started = s.signaling.drain(cfg).await.ok_or_else(signaling_gone)?;
    if started {
        tracing::info!(
            timeout_s = cfg.timeout.as_secs(),
            "draining (admin API): the process stops when the drain is over"
        );
    }
    let status = s.signaling.status().await.ok_or_else(signaling_gone)?;
    Ok((StatusCode::ACCEPTED, Json(DrainStarted { started, status })).into_response())
}

/// `GET /api/v1/status`: running or draining, and the calls in progress.
pub async fn status(State(s): State<Arc<AdminState>>) -> Result<Json<StatusView>, ApiError> {
    s.signaling
        .status()
        .await
        .map(Json)
        .ok_or_else(signaling_gone)
}
