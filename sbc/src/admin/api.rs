//! The `/api/v1` resources beyond media: calls, trunks, routes, ACLs, bans, configuration.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use sbc_proto::{b2bua::CallInfo, net::Side};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    AdminState,
    error::{ApiError, ApiJson, ApiPath, ApiQuery},
    live::{Applied, merge_patch},
};
use crate::signaling::RegView;

type Result<T> = std::result::Result<T, ApiError>;

fn signaling_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the call layer is stopping",
    )
}

/// One leg of a call.
#[derive(Debug, Serialize)]
struct LegJson {
    side: &'static str,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    peer: String,
    transport: &'static str,
}

/// A call as listed by `GET /api/v1/calls`.
#[derive(Debug, Serialize)]
struct CallJson {
    id: u64,
    direction: &'static str,
    state: &'static str,
    age_s: f64,
    answer_delay_s: Option<f64>,
    media_session: Option<u64>,
    /// The carrier-side trunk (by name), if the carrier is a configured trunk.
    trunk: Option<String>,
    legs: Vec<LegJson>,
}

const fn direction(from: Side) -> &'static str {
    match from {
        Side::Inside => "outbound",
        Side::Outside => "inbound",
    }
}

fn call_json(c: &CallInfo, trunks: &[crate::config::Trunk]) -> CallJson {
    CallJson {
        id: c.id,
        direction: direction(c.from),
        state: if c.answered { "answered" } else { "ringing" },
        age_s: c.started.elapsed().as_secs_f64(),
        answer_delay_s: c
            .answered_at
            .map(|a| a.saturating_duration_since(c.started).as_secs_f64()),
        media_session: c.media.map(|m| m.0),
        trunk: c.trunk.and_then(|t| trunks.get(t)).map(|t| t.name.clone()),
        legs: c
            .legs
            .iter()
            .map(|l| LegJson {
                side: l.side.as_str(),
                call_id: l.call_id.clone(),
                local_tag: l.local_tag.clone(),
                remote_tag: l.remote_tag.clone(),
                peer: l.peer.addr.to_string(),
                transport: l.peer.transport.as_str(),
            })
            .collect(),
    }
}

/// Parses the query string by hand so an unknown or malformed parameter is a 400 with a
/// JSON error, not axum's plain-text rejection.
fn query_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<()> {
    for k in q.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}`; allowed: {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn number<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str, default: T) -> Result<T> {
    q.get(key).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| ApiError::bad_request(format!("`{key}` must be a non-negative integer")))
    })
}

/// `GET /api/v1/calls?direction=&state=&limit=&offset=`
pub async fn list_calls(
    State(s): State<Arc<AdminState>>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>> {
    query_params(&q, &["direction", "state", "limit", "offset"])?;
    let dir = q.get("direction").map(String::as_str);
    if !matches!(dir, None | Some("inbound" | "outbound")) {
        return Err(ApiError::bad_request(
            "`direction` must be inbound or outbound",
        ));
    }
    let state = q.get("state").map(String::as_str);
    if !matches!(state, None | Some("ringing" | "answered")) {
        return Err(ApiError::bad_request("`state` must be ringing or answered"));
    }
    let limit: usize = number(&q, "limit", 100)?;
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be 1-1000"));
    }
    let offset: usize = number(&q, "offset", 0)?;
    let calls = s.signaling.calls().await.ok_or_else(signaling_gone)?;
    let cfg = s.config.current();
    let matching: Vec<CallJson> = calls
        .iter()
        .map(|c| call_json(c, &cfg.trunks))
        .filter(|c| dir.is_none_or(|d| d == c.direction))
        .filter(|c| state.is_none_or(|st| st == c.state))
        .collect();
    let total = matching.len();
    let page: Vec<CallJson> = matching.into_iter().skip(offset).take(limit).collect();
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "calls": page,
    })))
}

fn call_id(id: &str) -> Result<u64> {
    id.parse()
        .map_err(|_| ApiError::bad_request("a call id is a non-negative integer"))
}

/// `GET /api/v1/calls/{id}`: both legs and the media session with its per-stream counters.
pub async fn get_call(
    State(s): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    let id = call_id(&id)?;
    let calls = s.signaling.calls().await.ok_or_else(signaling_gone)?;
    let call = calls
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no call {id}")))?;
    let media = call
        .media
        .and_then(|m| s.media.session_view(m))
        .map(|v| serde_json::to_value(v).unwrap_or(Value::Null));
    let cfg = s.config.current();
    let mut v = serde_json::to_value(call_json(call, &cfg.trunks)).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("media".into(), media.unwrap_or(Value::Null));
    }
    Ok(Json(v))
}

/// `DELETE /api/v1/calls/{id}`: BYE on both legs (CANCEL/487 before the answer).
pub async fn end_call(
    State(s): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let id = call_id(&id)?;
    match s.signaling.end_call(id).await {
        Some(true) => {
            tracing::info!(call = id, "call ended through the admin API");
            Ok(StatusCode::NO_CONTENT)
        }
        Some(false) => Err(ApiError::not_found(format!("no call {id}"))),
        None => Err(signaling_gone()),
    }
}

fn trunk_view(
    t: &crate::config::Trunk,
    regs: Option<&[RegView]>,
    health: Option<&[(String, &'static str)]>,
) -> Value {
    let health = if t.options_interval_s.is_some() {
        let state = health
            .and_then(|h| h.iter().find(|(n, _)| *n == t.name))
            .map_or("unknown", |(_, s)| *s);
        json!({"state": state})
    } else {
        json!({"state": "not_monitored"})
    };
    let registration = if t.register {
        match regs.and_then(|r| r.iter().find(|v| v.trunk == t.name)) {
            Some(v) => json!(v),
            None => json!({"state": "unknown"}),
        }
    } else {
        // IP-authenticated trunk: nothing to register.
        json!({"state": "disabled"})
    };
    let mut config = json!(t);
    if let Some(p) = config.get_mut("password") {
        *p = Value::String(super::live::REDACTED.into());
    }
    json!({
        "name": t.name,
        "config": config,
        "registration": registration,
        // `not_monitored` without options_interval_s; else unknown/up/down.
        "health": health,
    })
}

/// `GET /api/v1/trunks`
pub async fn list_trunks(State(s): State<Arc<AdminState>>) -> Json<Value> {
    let c = s.config.current();
    let regs = s.signaling.registrations().await;
    let health = s.signaling.health().await;
    Json(Value::Array(
        c.trunks
            .iter()
            .map(|t| trunk_view(t, regs.as_deref(), health.as_deref()))
            .collect(),
    ))
}

/// `GET /api/v1/trunks/{name}`
pub async fn get_trunk(
    State(s): State<Arc<AdminState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>> {
    let c = s.config.current();
    let regs = s.signaling.registrations().await;
    let health = s.signaling.health().await;
    c.trunks
        .iter()
        .find(|t| t.name == name)
        .map(|t| Json(trunk_view(t, regs.as_deref(), health.as_deref())))
        .ok_or_else(|| ApiError::not_found(format!("no trunk `{name}`")))
}

fn applied(a: &Applied, status: StatusCode) -> Response {
    (status, Json(a)).into_response()
}

/// `PUT /api/v1/trunks/{name}`: creates or replaces one trunk (body: the `[[trunk]]` keys;
/// `name` may be left out). Goes through the validated, persisted reconfiguration.
pub async fn put_trunk(
    State(s): State<Arc<AdminState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let mut trunk = body;
    let Some(obj) = trunk.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a trunk is a JSON object",
        ));
    };
    match obj.get("name") {
        None => {
            obj.insert("name".into(), Value::String(name.clone()));
        }
        Some(Value::String(n)) if *n == name => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`name` in the body must match the trunk name in the path",
            ));
        }
    }
    let mut created = false;
    let result = s
        .config
        .edit(&s.signaling, "api", |cfg| {
            let list = trunks_mut(cfg);
            match list
                .iter_mut()
                .find(|t| t["name"] == Value::String(name.clone()))
            {
                Some(t) => *t = trunk,
                None => {
                    created = true;
                    list.push(trunk);
                }
            }
            Ok(())
        })
        .await?;
    Ok(applied(
        &result,
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
    ))
}

fn trunks_mut(cfg: &mut Value) -> &mut Vec<Value> {
    if !cfg["trunk"].is_array() {
        cfg["trunk"] = Value::Array(Vec::new());
    }
    match &mut cfg["trunk"] {
        Value::Array(a) => a,
        // Made an array just above.
        _ => unreachable!("trunk is an array"),
    }
}

/// `DELETE /api/v1/trunks/{name}`
pub async fn delete_trunk(
    State(s): State<Arc<AdminState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response> {
    let result = s
        .config
        .edit(&s.signaling, "api", |cfg| {
            let list = trunks_mut(cfg);
            let before = list.len();
            list.retain(|t| t["name"] != Value::String(name.clone()));
            if list.len() == before {
                return Err(ApiError::not_found(format!("no trunk `{name}`")));
            }
            Ok(())
        })
        .await?;
    Ok(applied(&result, StatusCode::OK))
}

/// `POST /api/v1/trunks/{name}/register`: sends a REGISTER now (204); 409 for a trunk without
/// `register = true` (IP-authenticated: nothing to refresh).
pub async fn register_trunk(
    State(s): State<Arc<AdminState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode> {
    let Some(trunk) = s
        .config
        .current()
        .trunks
        .iter()
        .find(|t| t.name == name)
        .cloned()
    else {
        return Err(ApiError::not_found(format!("no trunk `{name}`")));
    };
    if !trunk.register {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "registration is disabled for this trunk (register = false: IP-authenticated)",
        ));
    }
    match s.signaling.register(&name).await {
        Some(true) => Ok(StatusCode::NO_CONTENT),
        Some(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "the trunk's registration is not running",
        )),
        None => Err(signaling_gone()),
    }
}

/// `GET /api/v1/routes`: the outbound routes (called number → trunks) and inbound routes
/// (DID → PBX target), in match order, with what happens when none matches.
pub async fn routes(State(s): State<Arc<AdminState>>) -> Json<Value> {
    let c = s.config.current();
    let outbound_default = if c.routes.is_empty() {
        json!({"trunks": c.trunks.iter().map(|t| t.name.clone()).collect::<Vec<_>>()})
    } else {
        json!({"reject": 404})
    };
    Json(json!({
        "outbound": c.routes,
        "outbound_default": outbound_default,
        "inbound": c.inbound,
        "inbound_default": {"target": c.pbx.address.to_string(), "transport": c.pbx.transport},
    }))
}

/// A body that must be a JSON object whose keys are among `keys`, each an array: the object,
/// or a 422 naming what is wrong.
fn object_of_arrays<'a>(
    body: &'a Value,
    keys: &[&str],
) -> Result<&'a serde_json::Map<String, Value>> {
    let unprocessable = |msg: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg);
    let obj = body.as_object().ok_or_else(|| {
        unprocessable(format!(
            "expected a JSON object with some of: {}",
            keys.join(", ")
        ))
    })?;
    for (key, v) in obj {
        if !keys.contains(&key.as_str()) {
            return Err(unprocessable(format!(
                "unknown key `{key}` (expected {})",
                keys.join(", ")
            )));
        }
        if !v.is_array() {
            return Err(unprocessable(format!("`{key}` must be an array")));
        }
    }
    Ok(obj)
}

/// `PUT /api/v1/routes`: replaces the outbound and inbound routes (body: `{"outbound":
/// [[[route]] tables], "inbound": [[[inbound]] tables]}`; a missing list is left as it is).
/// Goes through the validated, persisted reconfiguration: a bad pattern or an unknown trunk
/// is a 422 with the key path, and the old routes stay.
pub async fn put_routes(
    State(s): State<Arc<AdminState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let obj = object_of_arrays(&body, &["outbound", "inbound"])?;
    let result = s
        .config
        .edit(&s.signaling, "api", |cfg| {
            for (key, section) in [("outbound", "route"), ("inbound", "inbound")] {
                if let Some(list) = obj.get(key)
                    && let Some(map) = cfg.as_object_mut()
                {
                    if list.as_array().is_some_and(Vec::is_empty) {
                        map.remove(section);
                    } else {
                        map.insert(section.into(), list.clone());
                    }
                }
            }
            Ok(())
        })
        .await?;
    Ok(applied(&result, StatusCode::OK))
}

/// `GET /api/v1/acls`: who may send SIP (edit through `PATCH /api/v1/config`).
pub async fn acls(State(s): State<Arc<AdminState>>) -> Json<Value> {
    let c = s.config.current();
    Json(json!({
        "inside": {"allow": c.pbx.allow.iter().map(ToString::to_string).collect::<Vec<_>>()},
        "outside": {"allow": c.trunks.iter()
            .map(|t| json!({"trunk": t.name, "address": t.proxy.host()}))
            .collect::<Vec<_>>()},
        "deny": c.limits.deny.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// `PUT /api/v1/acls`: replaces the inside allowlist (`[pbx] allow`) and/or the denylist
/// (`[limits] deny`); body `{"allow": [CIDR...], "deny": [CIDR...]}`, a missing list is left
/// as it is. Validated and persisted like any configuration change (422 keeps the old lists).
pub async fn put_acls(
    State(s): State<Arc<AdminState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let obj = object_of_arrays(&body, &["allow", "deny"])?;
    let result = s
        .config
        .edit(&s.signaling, "api", |cfg| {
            if let Some(allow) = obj.get("allow") {
                cfg["pbx"]["allow"] = allow.clone();
            }
            if let Some(deny) = obj.get("deny") {
                if !cfg["limits"].is_object() {
                    cfg["limits"] = json!({});
                }
                cfg["limits"]["deny"] = deny.clone();
            }
            Ok(())
        })
        .await?;
    Ok(applied(&result, StatusCode::OK))
}

/// `GET /api/v1/bans`: sources banned for exceeding `[limits] source_rate`.
pub async fn bans(State(s): State<Arc<AdminState>>) -> Result<Json<Value>> {
    let list = s.signaling.bans().await.ok_or_else(signaling_gone)?;
    Ok(Json(json!(list)))
}

/// `DELETE /api/v1/bans/{address}`: lifts a ban at once.
pub async fn delete_ban(
    State(s): State<Arc<AdminState>>,
    ApiPath(addr): ApiPath<String>,
) -> Result<StatusCode> {
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| ApiError::bad_request("a ban is identified by an IP address"))?;
    if s.signaling.unban(addr).await.ok_or_else(signaling_gone)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("{addr} is not banned")))
    }
}

/// `GET /api/v1/config` (tokens redacted).
pub async fn get_config(State(s): State<Arc<AdminState>>) -> Json<Value> {
    Json(s.config.redacted_json())
}

/// `PUT /api/v1/config`: full replace.
pub async fn put_config(
    State(s): State<Arc<AdminState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let r = s.config.apply_json(&s.signaling, body, "api").await?;
    Ok(applied(&r, StatusCode::OK))
}

/// `PATCH /api/v1/config`: RFC 7396 merge patch.
pub async fn patch_config(
    State(s): State<Arc<AdminState>>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Response> {
    if !patch.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a merge patch is a JSON object",
        ));
    }
    let r = s
        .config
        .edit(&s.signaling, "api", |cfg| {
            merge_patch(cfg, &patch);
            Ok(())
        })
        .await?;
    Ok(applied(&r, StatusCode::OK))
}

/// `POST /api/v1/reload`: re-reads the file.
pub async fn reload(State(s): State<Arc<AdminState>>) -> Result<Response> {
    let r = s.config.reload(&s.signaling, "api reload").await?;
    Ok(applied(&r, StatusCode::OK))
}
