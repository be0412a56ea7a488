//! The HTTP admin API (axum): health, readiness, Prometheus metrics and the media view.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;

use crate::{
    media::xdp::{Attachment, XdpRelay},
    metrics::Metrics,
};

/// What the media fast path is doing, as reported by `/api/v1/media`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum XdpStatus {
    /// Turned off by configuration (`media.xdp = "off"`) or no interfaces configured.
    Off {
        /// Why.
        reason: String,
    },
    /// Wanted but could not be loaded or attached; media is relayed in userspace.
    Unavailable {
        /// The error.
        error: String,
    },
    /// Loaded and attached.
    Attached {
        /// Where.
        attachments: Vec<Attachment>,
    },
}

/// Shared state of the admin handlers.
#[derive(Debug)]
pub struct AdminState {
    /// Metric handles.
    pub metrics: Metrics,
    /// The XDP relay, when loaded.
    pub xdp: Option<Arc<parking_lot::Mutex<XdpRelay>>>,
    /// Fast-path status.
    pub xdp_status: XdpStatus,
    /// Set once every listener is bound.
    pub ready: AtomicBool,
}

/// Builds the router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/media", get(media))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

fn refresh_xdp(s: &AdminState) {
    let Some(xdp) = s.xdp.as_ref() else { return };
    match xdp.lock().stats() {
        Ok(stats) => s.metrics.observe_xdp(&stats),
        Err(e) => tracing::warn!(error = %e, "reading XDP counters failed"),
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    refresh_xdp(&s);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Serialize)]
struct MediaView {
    xdp: XdpStatus,
    xdp_counters: Option<std::collections::BTreeMap<&'static str, u64>>,
}

async fn media(State(s): State<Arc<AdminState>>) -> Json<MediaView> {
    let counters = s
        .xdp
        .as_ref()
        .and_then(|x| x.lock().stats().ok())
        .map(|stats| {
            sbc_ebpf_common::Stat::ALL
                .iter()
                .map(|st| (st.name(), stats[*st as usize]))
                .collect()
        });
    Json(MediaView {
        xdp: s.xdp_status.clone(),
        xdp_counters: counters,
    })
}
