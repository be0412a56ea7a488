//! `GET /api/v1/calls/{id}/trace` (the SIP messages of both legs, JSON or a text ladder, also
//! for recently ended or failed calls) and `GET /api/v1/calls/{id}/media` (the one-way-audio
//! diagnosis of a live call).

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    AdminState,
    error::{ApiError, ApiPath, ApiQuery},
};
use crate::{media::diagnosis, trace::ladder};

type Result<T> = std::result::Result<T, ApiError>;

/// How `{id}` is read (`?by=`).
enum Key<'a> {
    Call(u64),
    CallId(&'a str),
    Number(&'a str),
}

fn key<'a>(id: &'a str, q: &'a HashMap<String, String>) -> Result<Key<'a>> {
    if let Some(k) = q.keys().find(|k| !matches!(k.as_str(), "by" | "format")) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}`; expected by, format"
        )));
    }
    match q.get("by").map(String::as_str) {
        None if id.bytes().all(|b| b.is_ascii_digit()) => id
            .parse()
            .map(Key::Call)
            .map_err(|_| ApiError::bad_request("call handle out of range")),
        // Not a handle: a Call-ID, as operators copy it from a PBX log.
        None | Some("call_id") => Ok(Key::CallId(id)),
        Some("call") => id
            .parse()
            .map(Key::Call)
            .map_err(|_| ApiError::bad_request("a call handle is a non-negative integer")),
        Some("number") => Ok(Key::Number(id)),
        Some(other) => Err(ApiError::bad_request(format!(
            "by={other}: expected call, call_id or number"
        ))),
    }
}

/// `GET /api/v1/calls/{id}/trace[?by=call|call_id|number][&format=json|text]`.
pub async fn call_trace(
    State(s): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    let text = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format={other}: expected json or text"
            )));
        }
    };
    let key = key(&id, &q)?;
    let Some(tracer) = s.tracer.as_ref().filter(|t| t.serves_traces()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SIP traces are off ([trace] enabled = false)",
        ));
    };
    let body = tracer.with_store(|store| {
        let legs = match key {
            Key::Call(c) => store.by_call(c),
            Key::CallId(c) => store.by_call_id(c),
            Key::Number(n) => store.by_number(n),
        };
        if legs.is_empty() {
            None
        } else if text {
            Some(ladder::to_text(&legs).into_response())
        } else {
            Some(Json(ladder::to_json(&legs)).into_response())
        }
    });
    let mut resp = body.ok_or_else(|| {
        ApiError::not_found(format!(
            "no trace for {id} (never seen, or ended longer than [trace] keep_s ago)"
        ))
    })?;
    if text {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    Ok(resp)
}

/// `GET /api/v1/calls/{id}/media`: per stream, who sends, latch refusals, SDP address versus
/// observed source, NAT suspicion, fast path or userspace, last packet, in fields and words.
pub async fn call_media(
    State(s): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("a call id is a non-negative integer"))?;
    let calls = s.signaling.calls().await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the call layer is stopping",
        )
    })?;
    let call = calls
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no call {id}")))?;
    let session = call
        .media
        .ok_or_else(|| ApiError::not_found(format!("call {id} has no media session")))?;
    let view = s
        .media
        .session_view(session)
        .ok_or_else(|| ApiError::not_found(format!("call {id}: media session gone")))?;
    let signaling: [Option<SocketAddr>; 2] = call.legs.each_ref().map(|l| Some(l.peer.addr));
    let d = diagnosis::diagnose(&view, signaling);
    Ok(Json(json!({
        "call": id,
        "media_session": session.0,
        "verdict": d.verdict,
        "summary": d.summary,
        "streams": d.streams,
    })))
}
