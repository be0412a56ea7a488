//! The HTTP admin API (axum): health, readiness, Prometheus metrics, the media view, and the
//! media control plane (`/api/v1/media/sessions`), which drives the same [`MediaControl`]
//! contract the call layer uses: for operators, test harnesses, and until the B2BUA exists.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sbc_proto::media::{
    Direction, Leg, MediaControl, MediaError, SessionId, StreamDesc, StreamRelay,
};
use serde::{Deserialize, Serialize};

use crate::{
    media::{
        MediaManager,
        manager::Overview,
        xdp::{Attachment, XdpRelay},
    },
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
    /// The media manager.
    pub media: MediaManager,
    /// The signaling task (calls, reconfiguration).
    pub signaling: crate::signaling::SignalingHandle,
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
        .route(
            "/api/v1/media/sessions",
            get(list_sessions).post(create_session),
        )
        .route(
            "/api/v1/media/sessions/{id}",
            get(get_session).put(put_session).delete(delete_session),
        )
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
    /// Mappings present in the (pinned) map, whoever installed them.
    xdp_map_entries: Option<usize>,
    relay: Overview,
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
    let entries = s
        .xdp
        .as_ref()
        .and_then(|x| x.lock().mapping_keys().ok())
        .map(|k| k.len());
    Json(MediaView {
        xdp: s.xdp_status.clone(),
        xdp_counters: counters,
        xdp_map_entries: entries,
        relay: s.media.overview(),
    })
}

/// A stream from a peer's SDP, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamJson {
    addr: std::net::IpAddr,
    rtp_port: u16,
    #[serde(default)]
    rtcp_port: Option<u16>,
    #[serde(default)]
    rtcp_mux: bool,
    #[serde(default)]
    direction: DirectionJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DirectionJson {
    #[default]
    Sendrecv,
    Sendonly,
    Recvonly,
    Inactive,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LegJson {
    Inside,
    Outside,
}

impl From<LegJson> for Leg {
    fn from(l: LegJson) -> Self {
        match l {
            LegJson::Inside => Leg::Inside,
            LegJson::Outside => Leg::Outside,
        }
    }
}

impl From<&StreamJson> for StreamDesc {
    fn from(j: &StreamJson) -> Self {
        StreamDesc {
            addr: j.addr,
            rtp_port: j.rtp_port,
            rtcp_port: j.rtcp_port,
            rtcp_mux: j.rtcp_mux,
            direction: match j.direction {
                DirectionJson::Sendrecv => Direction::SendRecv,
                DirectionJson::Sendonly => Direction::SendOnly,
                DirectionJson::Recvonly => Direction::RecvOnly,
                DirectionJson::Inactive => Direction::Inactive,
            },
        }
    }
}

/// `POST /api/v1/media/sessions` (an offer) and `PUT .../{id}` (an answer or re-offer).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribeJson {
    /// The leg whose SDP this is.
    from: LegJson,
    streams: Vec<StreamJson>,
    /// PUT only: `commit` (an answer, the default) or `update` (a re-offer).
    #[serde(default)]
    action: Option<ActionJson>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionJson {
    Commit,
    Update,
}

#[derive(Serialize)]
struct EndpointJson {
    addr: String,
    rtp_port: u16,
    rtcp_port: u16,
}

#[derive(Serialize)]
struct RelayJson {
    inside: EndpointJson,
    outside: EndpointJson,
}

#[derive(Serialize)]
struct SessionJson {
    session: u64,
    streams: Vec<RelayJson>,
}

fn relays_json(session: SessionId, relays: &[StreamRelay]) -> SessionJson {
    let ep = |e: sbc_proto::media::RelayEndpoint| EndpointJson {
        addr: e.addr.to_string(),
        rtp_port: e.rtp_port,
        rtcp_port: e.rtcp_port,
    };
    SessionJson {
        session: session.0,
        streams: relays
            .iter()
            .map(|r| RelayJson {
                inside: ep(r.inside),
                outside: ep(r.outside),
            })
            .collect(),
    }
}

/// A media error as the HTTP status of the SIP reaction it stands for (503 → 503, 488 → 422,
/// unknown session → 404), with the SIP status in the body.
fn media_error(e: &MediaError) -> Response {
    let http = match e {
        MediaError::UnknownSession(_) => StatusCode::NOT_FOUND,
        e if e.status_code() == 503 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (
        http,
        Json(serde_json::json!({"error": e.to_string(), "sip_status": e.status_code()})),
    )
        .into_response()
}

async fn list_sessions(State(s): State<Arc<AdminState>>) -> Json<Vec<u64>> {
    Json(s.media.session_ids().into_iter().map(|i| i.0).collect())
}

async fn create_session(
    State(s): State<Arc<AdminState>>,
    Json(body): Json<DescribeJson>,
) -> Response {
    let streams: Vec<StreamDesc> = body.streams.iter().map(StreamDesc::from).collect();
    let mut media = s.media.clone();
    match media.allocate(body.from.into(), &streams) {
        Ok(a) => (
            StatusCode::CREATED,
            Json(relays_json(a.session, &a.streams)),
        )
            .into_response(),
        Err(e) => media_error(&e),
    }
}

async fn put_session(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<u64>,
    Json(body): Json<DescribeJson>,
) -> Response {
    let id = SessionId(id);
    let streams: Vec<StreamDesc> = body.streams.iter().map(StreamDesc::from).collect();
    let mut media = s.media.clone();
    let result = match body.action.unwrap_or(ActionJson::Commit) {
        ActionJson::Commit => media.commit(id, body.from.into(), &streams),
        ActionJson::Update => media.update(id, body.from.into(), &streams),
    };
    match result {
        Ok(relays) => Json(relays_json(id, &relays)).into_response(),
        Err(e) => media_error(&e),
    }
}

async fn get_session(State(s): State<Arc<AdminState>>, Path(id): Path<u64>) -> Response {
    match s.media.session_view(SessionId(id)) {
        Some(v) => Json(v).into_response(),
        None => media_error(&MediaError::UnknownSession(SessionId(id))),
    }
}

async fn delete_session(State(s): State<Arc<AdminState>>, Path(id): Path<u64>) -> Response {
    let id = SessionId(id);
    if s.media.session_view(id).is_none() {
        return media_error(&MediaError::UnknownSession(id));
    }
    s.media.clone().release(id);
    StatusCode::NO_CONTENT.into_response()
}
