//! The HTTP admin API (axum): health, readiness, Prometheus metrics, the media view, and the
//! media control plane (`/api/v1/media/sessions`), which drives the media table verbs the
//! call layer uses (through [`MediaManager`]'s admin verbs): for operators and test harnesses;
//! calls, trunks, routes, ACLs, bans and live configuration (`api`, `live`), bearer-token
//! authentication (`auth`), and the OpenAPI document generated from the route table
//! (`openapi`), from which the router itself is built.

pub mod api;
pub mod auth;
pub mod cdrs;
pub mod drain;
pub mod error;
pub mod host;
pub mod live;
pub mod openapi;
pub mod persist;
pub mod takeover;
pub mod tls;
pub mod trace;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use std::time::Instant;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
};
use sbc_proto::media::{Direction, MediaError, SessionId, StreamDesc, StreamRelay};
use sbc_proto::net::Side;
use serde::{Deserialize, Serialize};

use crate::{
    media::{
        MediaManager,
        view::Overview,
        xdp::{Attachment, XdpRelay},
    },
    metrics::Metrics,
};
use error::{ApiError, ApiJson, ApiPath};

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
    /// The running configuration, its file, and the admin tokens.
    pub config: live::LiveConfig,
    /// Gauges computed from the live media sessions at scrape time.
    pub scrape: ScrapeGauges,
    /// Refusals before any handler (the Host check).
    pub admin_metrics: host::AdminMetrics,
    /// Per-call SIP traces, when traces or HEP are on.
    pub tracer: Option<crate::trace::Tracer>,
    /// `[cdr]` as started (where `GET /api/v1/cdrs` reads).
    pub cdr: crate::config::Cdr,
    /// This node's side of an active/standby pair (`[state] peer`).
    pub pair: Option<crate::state::pair::Pair>,
}

/// Media gauges derived at scrape time from the live sessions (cheaper than keeping them
/// current on the packet path, and exact at the moment Prometheus looks).
#[derive(Debug, Clone)]
pub struct ScrapeGauges {
    streams: prometheus::IntGaugeVec,
    port_pairs: prometheus::IntGaugeVec,
    rtp_lost: prometheus::IntGauge,
    jitter_max: prometheus::Gauge,
    jitter_avg: prometheus::Gauge,
    /// Answered streams by which direction is silent (one-way-audio diagnosis).
    silent: prometheus::IntGaugeVec,
}

impl ScrapeGauges {
    /// Creates and registers the gauges.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let g = Self {
            streams: prometheus::IntGaugeVec::new(
                prometheus::Opts::new(
                    "sbc_media_streams",
                    "Live media streams by forwarding path (xdp: has fast-path mappings).",
                ),
                &["path"],
            )?,
            port_pairs: prometheus::IntGaugeVec::new(
                prometheus::Opts::new(
                    "sbc_media_port_pairs",
                    "Relay port pairs (RTP+RTCP) in the pool, by side.",
                ),
                &["side"],
            )?,
            rtp_lost: prometheus::IntGauge::new(
                "sbc_media_rtp_lost_packets",
                "RTP packets lost so far in live streams (sequence gaps seen in userspace).",
            )?,
            jitter_max: prometheus::Gauge::new(
                "sbc_media_rtp_jitter_max_seconds",
                "Highest interarrival jitter (RFC 3550) among live streams seen in userspace.",
            )?,
            jitter_avg: prometheus::Gauge::new(
                "sbc_media_rtp_jitter_avg_seconds",
                "Mean interarrival jitter (RFC 3550) of live streams seen in userspace.",
            )?,
            silent: prometheus::IntGaugeVec::new(
                prometheus::Opts::new(
                    "sbc_media_silent_streams",
                    "Answered media streams with a silent direction (no packet for 3 s), by who \
                     is silent (pbx, carrier, both); see GET /api/v1/calls/{id}/media.",
                ),
                &["silent"],
            )?,
        };
        registry.register(Box::new(g.silent.clone()))?;
        registry.register(Box::new(g.streams.clone()))?;
        registry.register(Box::new(g.port_pairs.clone()))?;
        registry.register(Box::new(g.rtp_lost.clone()))?;
        registry.register(Box::new(g.jitter_max.clone()))?;
        registry.register(Box::new(g.jitter_avg.clone()))?;
        Ok(g)
    }

    /// Recomputes the gauges from `media`.
    fn refresh(&self, media: &MediaManager) {
        let overview = media.overview();
        let total = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.port_pairs
            .with_label_values(&["inside"])
            .set(total(overview.ports_total_inside));
        self.port_pairs
            .with_label_values(&["outside"])
            .set(total(overview.ports_total_outside));
        let (mut xdp, mut user, mut lost) = (0i64, 0i64, 0i64);
        let (mut jmax, mut jsum, mut jn) = (0f64, 0f64, 0u32);
        let mut silent = [0i64; 3];
        for id in media.session_ids() {
            let Some(v) = media.session_view(id) else {
                continue;
            };
            if v.committed {
                crate::media::diagnosis::count_silent(&v, &mut silent);
            }
            for st in &v.streams {
                if st.xdp_mappings > 0 {
                    xdp += 1;
                } else {
                    user += 1;
                }
                for ep in [&st.inside, &st.outside] {
                    lost += ep.rtp_lost.max(0);
                    if let Some(j) = ep.rtp_jitter_ms {
                        jmax = jmax.max(j);
                        jsum += j;
                        jn += 1;
                    }
                }
            }
        }
        self.streams.with_label_values(&["xdp"]).set(xdp);
        self.streams.with_label_values(&["userspace"]).set(user);
        self.rtp_lost.set(lost);
        for (label, n) in ["pbx", "carrier", "both"].iter().zip(silent) {
            self.silent.with_label_values(&[label]).set(n);
        }
        self.jitter_max.set(jmax / 1000.0);
        self.jitter_avg.set(if jn == 0 {
            0.0
        } else {
            jsum / f64::from(jn) / 1000.0
        });
    }
}

/// Largest request body accepted (a whole configuration is a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

type Handler = MethodRouter<Arc<AdminState>>;

/// The handler of one operation of [`openapi::OPS`].
fn handler(method: &str, path: &str) -> Option<Handler> {
    let filter = match method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "POST" => MethodFilter::POST,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        _ => return None,
    };
    let h = match (method, path) {
        ("GET", "/healthz") => on(filter, healthz),
        ("GET", "/readyz") => on(filter, readyz),
        ("GET", "/metrics") => on(filter, metrics),
        ("GET", "/api/v1/openapi.json") => on(filter, || async { Json(openapi::document()) }),
        ("GET", "/api/v1/calls") => on(filter, api::list_calls),
        ("GET", "/api/v1/calls/{id}") => on(filter, api::get_call),
        ("DELETE", "/api/v1/calls/{id}") => on(filter, api::end_call),
        ("GET", "/api/v1/calls/{id}/trace") => on(filter, trace::call_trace),
        ("GET", "/api/v1/calls/{id}/media") => on(filter, trace::call_media),
        ("GET", "/api/v1/trunks") => on(filter, api::list_trunks),
        ("GET", "/api/v1/trunks/{name}") => on(filter, api::get_trunk),
        ("PUT", "/api/v1/trunks/{name}") => on(filter, api::put_trunk),
        ("DELETE", "/api/v1/trunks/{name}") => on(filter, api::delete_trunk),
        ("POST", "/api/v1/trunks/{name}/register") => on(filter, api::register_trunk),
        ("GET", "/api/v1/routes") => on(filter, api::routes),
        ("PUT", "/api/v1/routes") => on(filter, api::put_routes),
        ("GET", "/api/v1/acls") => on(filter, api::acls),
        ("PUT", "/api/v1/acls") => on(filter, api::put_acls),
        ("GET", "/api/v1/bans") => on(filter, api::bans),
        ("GET", "/api/v1/cdrs") => on(filter, cdrs::list_cdrs),
        ("DELETE", "/api/v1/bans/{address}") => on(filter, api::delete_ban),
        ("GET", "/api/v1/config") => on(filter, api::get_config),
        ("PUT", "/api/v1/config") => on(filter, api::put_config),
        ("PATCH", "/api/v1/config") => on(filter, api::patch_config),
        ("POST", "/api/v1/reload") => on(filter, api::reload),
        ("POST", "/api/v1/drain") => on(filter, drain::drain),
        ("GET", "/api/v1/status") => on(filter, drain::status),
        ("POST", "/api/v1/state/takeover") => on(filter, takeover::takeover),
        ("GET", "/api/v1/media") => on(filter, media),
        ("GET", "/api/v1/media/sessions") => on(filter, list_sessions),
        ("POST", "/api/v1/media/sessions") => on(filter, create_session),
        ("GET", "/api/v1/media/sessions/{id}") => on(filter, get_session),
        ("PUT", "/api/v1/media/sessions/{id}") => on(filter, put_session),
        ("DELETE", "/api/v1/media/sessions/{id}") => on(filter, delete_session),
        _ => return None,
    };
    Some(h)
}

/// Builds the router from the route table, behind the Host check, the token check and the
/// body limit.
pub fn router(state: Arc<AdminState>) -> Router {
    let mut by_path: std::collections::BTreeMap<&str, Handler> = std::collections::BTreeMap::new();
    for o in openapi::OPS {
        let Some(h) = handler(o.method, o.path) else {
            // The table and `handler` live side by side; the unit test below keeps them equal.
            tracing::error!(method = o.method, path = o.path, "route without a handler");
            continue;
        };
        let entry = by_path.remove(o.path);
        by_path.insert(o.path, entry.map_or(h.clone(), |e| e.merge(h)));
    }
    let mut router = Router::new();
    for (path, h) in by_path {
        router = router.route(path, h);
    }
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        // Outside the token check: a rebound name is refused whatever it carries.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host::guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Liveness, which keepalived's check reads in a pair: a node fenced off by a newer epoch
/// (split brain) is not healthy, so its keepalived enters FAULT and gives the virtual address
/// up instead of keeping it beside the new active node.
async fn healthz(State(s): State<Arc<AdminState>>) -> Response {
    if s.pair
        .as_ref()
        .is_some_and(crate::state::pair::Pair::is_fenced)
    {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "fenced: another node took over; restart to rejoin as the standby\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    if s.signaling.is_draining() {
        // A load balancer or orchestrator stops sending here while the calls drain.
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if s.ready.load(Ordering::Acquire) {
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
    s.scrape.refresh(&s.media);
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
    /// Latch policies present in their map (one per socketless mapping awaiting its latch, or
    /// latched since; removed with it).
    xdp_latch_policies: Option<usize>,
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
    let policies = s.xdp.as_ref().and_then(|x| x.lock().latch_policies().ok());
    Json(MediaView {
        xdp: s.xdp_status.clone(),
        xdp_counters: counters,
        xdp_map_entries: entries,
        xdp_latch_policies: policies,
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

impl From<LegJson> for Side {
    fn from(l: LegJson) -> Self {
        match l {
            LegJson::Inside => Side::Inside,
            LegJson::Outside => Side::Outside,
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
    /// POST only: the call's signaling peers and trunk, as the call layer would pass them
    /// (media from a leg's signaling peer and the trunk's media networks may latch).
    #[serde(default)]
    peers: Option<PeersJson>,
}

/// [`sbc_proto::media::MediaPeers`] in JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersJson {
    #[serde(default)]
    inside: Option<std::net::IpAddr>,
    #[serde(default)]
    outside: Option<std::net::IpAddr>,
    #[serde(default)]
    trunk: Option<String>,
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
    ApiJson(body): ApiJson<DescribeJson>,
) -> Response {
    let streams: Vec<StreamDesc> = body.streams.iter().map(StreamDesc::from).collect();
    let media = s.media.clone();
    let p = body.peers.unwrap_or_default();
    let peers = sbc_proto::media::MediaPeers {
        inside: p.inside,
        outside: p.outside,
        trunk: p.trunk,
    };
    // The admin API is a driver of its own: one clock read per request.
    match media.allocate(Instant::now(), body.from.into(), &streams, &peers) {
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
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DescribeJson>,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let streams: Vec<StreamDesc> = body.streams.iter().map(StreamDesc::from).collect();
    let media = s.media.clone();
    let result = match body.action.unwrap_or(ActionJson::Commit) {
        ActionJson::Commit => media.commit(Instant::now(), id, body.from.into(), &streams),
        ActionJson::Update => media.update(Instant::now(), id, body.from.into(), &streams),
    };
    match result {
        Ok(relays) => Json(relays_json(id, &relays)).into_response(),
        Err(e) => media_error(&e),
    }
}

/// A session id from the path; a 400 with a JSON error when it is not a number.
fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse()
        .map(SessionId)
        .map_err(|_| ApiError::bad_request("a session id is a non-negative integer"))
}

async fn get_session(State(s): State<Arc<AdminState>>, ApiPath(id): ApiPath<String>) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match s.media.session_view(id) {
        Some(v) => Json(v).into_response(),
        None => media_error(&MediaError::UnknownSession(id)),
    }
}

async fn delete_session(
    State(s): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if s.media.session_view(id).is_none() {
        return media_error(&MediaError::UnknownSession(id));
    }
    s.media.clone().release(Instant::now(), id);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_has_a_handler() {
        for o in openapi::OPS {
            assert!(
                handler(o.method, o.path).is_some(),
                "{} {}",
                o.method,
                o.path
            );
        }
    }
}
