//! The route table of the admin API. The router is built from it and the OpenAPI document
//! (`/api/v1/openapi.json`) is generated from it, so the two cannot disagree about which
//! paths and methods exist, what they take and which statuses they answer.

use serde_json::{Map, Value, json};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (`/healthz`).
    Open,
    /// The read token or the admin token.
    Read,
    /// The admin token.
    Write,
}

/// One operation (method + path) of the API.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path template with `{param}` segments (axum's syntax is the same).
    pub path: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Name of the request body schema in `components.schemas`, if it takes a body.
    pub body: Option<&'static str>,
    /// Statuses it answers besides 401/403/413 (added for every authenticated operation).
    pub responses: &'static [u16],
    /// Content type of a 200 when not JSON.
    pub text: bool,
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    body: Option<&'static str>,
    responses: &'static [u16],
) -> Op {
    Op {
        method,
        path,
        summary,
        access,
        body,
        responses,
        text: false,
    }
}

/// Every operation the server implements.
pub const OPS: &[Op] = &[
    Op {
        text: true,
        ..op(
            "GET",
            "/healthz",
            "Liveness: 200 while the process serves HTTP; 503 on a pair node fenced off by a \
             newer epoch (keepalived's check then gives the virtual address up).",
            Access::Open,
            None,
            &[200, 503],
        )
    },
    Op {
        text: true,
        ..op(
            "GET",
            "/readyz",
            "Readiness: 200 once every listener is bound, 503 while starting or draining.",
            Access::Read,
            None,
            &[200, 503],
        )
    },
    Op {
        text: true,
        ..op(
            "GET",
            "/metrics",
            "Prometheus metrics (text exposition format 0.0.4).",
            Access::Read,
            None,
            &[200],
        )
    },
    op(
        "GET",
        "/api/v1/openapi.json",
        "This document.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "GET",
        "/api/v1/calls",
        "Calls in progress; filters `direction` (inbound|outbound), `state` (ringing|answered); paging `limit` (1-1000, default 100), `offset`.",
        Access::Read,
        None,
        &[200, 400],
    ),
    op(
        "GET",
        "/api/v1/calls/{id}",
        "One call: both legs and its media session with per-stream counters.",
        Access::Read,
        None,
        &[200, 400, 404],
    ),
    op(
        "GET",
        "/api/v1/calls/{id}/trace",
        "SIP messages of both legs of a call (live, ended or failed within [trace] keep_s): `{id}` is the call handle, else a Call-ID; `by` (call|call_id|number) says which; `format` json (default) or text (a ladder diagram).",
        Access::Read,
        None,
        &[200, 400, 404],
    ),
    op(
        "GET",
        "/api/v1/calls/{id}/media",
        "One-way-audio diagnosis of a live call: per stream, who sends, latch refusals and their source, SDP address versus observed source, NAT suspicion, XDP or userspace, last packet.",
        Access::Read,
        None,
        &[200, 400, 404],
    ),
    op(
        "DELETE",
        "/api/v1/calls/{id}",
        "Ends a call: BYE on both legs (CANCEL/487 before the answer).",
        Access::Write,
        None,
        &[204, 400, 404],
    ),
    op(
        "GET",
        "/api/v1/trunks",
        "Trunks from the configuration with registration and health state.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "GET",
        "/api/v1/trunks/{name}",
        "One trunk.",
        Access::Read,
        None,
        &[200, 404],
    ),
    op(
        "PUT",
        "/api/v1/trunks/{name}",
        "Creates (201) or replaces (200) a trunk through the validated, persisted reconfiguration.",
        Access::Write,
        Some("Trunk"),
        &[200, 201, 400, 409, 415, 422],
    ),
    op(
        "DELETE",
        "/api/v1/trunks/{name}",
        "Removes a trunk (persisted).",
        Access::Write,
        None,
        &[200, 404, 409, 422],
    ),
    op(
        "POST",
        "/api/v1/trunks/{name}/register",
        "Sends a REGISTER now; 409 for a trunk without register = true.",
        Access::Write,
        None,
        &[204, 404, 409],
    ),
    op(
        "GET",
        "/api/v1/routes",
        "Outbound routes (called number → trunks) and inbound routes (DID → PBX target), in match order.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "PUT",
        "/api/v1/routes",
        "Replaces the outbound and/or inbound routes (validated, persisted; 422 keeps the old ones).",
        Access::Write,
        Some("Routes"),
        &[200, 409, 422],
    ),
    op(
        "GET",
        "/api/v1/acls",
        "Source ACLs: PBX networks inside, trunk proxies outside.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "PUT",
        "/api/v1/acls",
        "Replaces the inside allowlist ([pbx] allow) and/or the denylist ([limits] deny) (validated, persisted; 422 keeps the old lists).",
        Access::Write,
        Some("Acls"),
        &[200, 409, 422],
    ),
    op(
        "GET",
        "/api/v1/bans",
        "Sources banned for exceeding [limits] source_rate, with age, remaining time and drops.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "GET",
        "/api/v1/cdrs",
        "Call detail records (one per call attempt), oldest end first, from PostgreSQL when [cdr] postgres is set, else from the [cdr] path files; filters `since`/`until` (RFC 3339, on the start time), `number` (calling or called on either leg), `call_id` (either leg), `direction`, `status`; paging `limit` (1-[cdr] max_page, default 100), `offset` (the reply's `next_offset`).",
        Access::Read,
        None,
        &[200, 400, 404, 503],
    ),
    op(
        "DELETE",
        "/api/v1/bans/{address}",
        "Lifts a ban.",
        Access::Write,
        None,
        &[204, 400, 404],
    ),
    op(
        "GET",
        "/api/v1/config",
        "The running configuration (tokens redacted).",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "PUT",
        "/api/v1/config",
        "Replaces the whole configuration: validated, persisted atomically, applied to new calls.",
        Access::Write,
        Some("Config"),
        &[200, 400, 409, 415, 422],
    ),
    op(
        "PATCH",
        "/api/v1/config",
        "Changes part of the configuration (RFC 7396 merge patch).",
        Access::Write,
        Some("Config"),
        &[200, 400, 409, 415, 422],
    ),
    op(
        "POST",
        "/api/v1/reload",
        "Re-reads the configuration file (as SIGHUP does).",
        Access::Write,
        None,
        &[200, 409, 422],
    ),
    op(
        "POST",
        "/api/v1/drain",
        "Graceful drain (as SIGTERM): new calls and OPTIONS get 503 + Retry-After, calls in progress go on for [general] drain_timeout_s, then BYE on both legs; registrations removed; the process exits 0. Answers 202 with the status (`started` false if already draining).",
        Access::Write,
        None,
        &[202, 503],
    ),
    op(
        "GET",
        "/api/v1/status",
        "State of the SBC: `running`, `draining`, `ending_calls` or `drained`; calls in progress; seconds to the drain's next deadline.",
        Access::Read,
        None,
        &[200, 503],
    ),
    op(
        "POST",
        "/api/v1/state/takeover",
        "Active/standby takeover (keepalived notify_master): the peer's call records ([state] peer) move to this node and its calls are restored here; this node then tries for the registration lease. 409 without [state] peer, or while the peer still has calls and a fresh heartbeat (?force=true overrides); 403 without X-Takeover-Token when [state] takeover_token is set.",
        Access::Write,
        None,
        &[200, 409, 503],
    ),
    op(
        "GET",
        "/api/v1/media",
        "Media relay: XDP state, fast-path counters, relay overview.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "GET",
        "/api/v1/media/sessions",
        "Media session ids.",
        Access::Read,
        None,
        &[200],
    ),
    op(
        "POST",
        "/api/v1/media/sessions",
        "Allocates a media session from an offer.",
        Access::Write,
        Some("MediaDescribe"),
        &[201, 400, 415, 422, 503],
    ),
    op(
        "GET",
        "/api/v1/media/sessions/{id}",
        "One media session with per-stream counters.",
        Access::Read,
        None,
        &[200, 400, 404],
    ),
    op(
        "PUT",
        "/api/v1/media/sessions/{id}",
        "Commits an answer or updates with a re-offer.",
        Access::Write,
        Some("MediaDescribe"),
        &[200, 400, 404, 415, 422, 503],
    ),
    op(
        "DELETE",
        "/api/v1/media/sessions/{id}",
        "Releases a media session.",
        Access::Write,
        None,
        &[204, 400, 404],
    ),
];

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "problems": {"type": "array", "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}}
                }}
            }
        },
        "Applied": {
            "type": "object",
            "properties": {
                "changed": {"type": "array", "items": {"type": "string"}},
                "restart_required": {"type": "array", "items": {"type": "string"}},
                "persisted": {"type": "boolean"}
            }
        },
        "Config": {
            "type": "object",
            "description": "The configuration file as JSON: the sections of config/sbc.toml \
                (general, log, sip, inside, outside, tls, pbx, trunk, route, inbound, media, admin, \
                limits). Unknown \
                keys are refused."
        },
        "Trunk": {
            "type": "object",
            "description": "The keys of one [[trunk]] table of config/sbc.toml (credentials, \
                limits, registration, health check, number and header rules); unknown keys \
                are refused with 422.",
            "required": ["proxy"],
            "properties": {
                "name": {"type": "string"},
                "proxy": {"type": "string", "description": "address:port, host:port (A/AAAA) or host (SRV, then A/AAAA)"},
                "transport": {"type": "string", "enum": ["udp", "tcp", "tls"]},
                "tls_server_name": {"type": "string"},
                "number": {"type": "array", "items": {"type": "object"}},
                "header": {"type": "array", "items": {"type": "object"}}
            }
        },
        "Acls": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "allow": {"type": "array", "items": {"type": "string"},
                    "description": "CIDRs the PBX may send from ([pbx] allow)"},
                "deny": {"type": "array", "items": {"type": "string"},
                    "description": "CIDRs always dropped, both sides ([limits] deny)"}
            }
        },
        "Routes": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "outbound": {"type": "array", "description": "[[route]] tables in match order: \
                    name, prefix or match (regex), trunks (names, in order), weights", "items": {
                    "type": "object",
                    "required": ["name", "trunks"],
                    "properties": {
                        "name": {"type": "string"},
                        "prefix": {"type": "string"},
                        "match": {"type": "string"},
                        "trunks": {"type": "array", "items": {"type": "string"}},
                        "weights": {"type": "array", "items": {"type": "integer", "minimum": 0}}
                    }
                }},
                "inbound": {"type": "array", "description": "[[inbound]] tables in match order: \
                    name, prefix or match (regex), target (address:port), transport", "items": {
                    "type": "object",
                    "required": ["name", "target"],
                    "properties": {
                        "name": {"type": "string"},
                        "prefix": {"type": "string"},
                        "match": {"type": "string"},
                        "target": {"type": "string"},
                        "transport": {"type": "string", "enum": ["udp", "tcp", "tls"]}
                    }
                }}
            }
        },
        "MediaDescribe": {
            "type": "object",
            "required": ["from", "streams"],
            "additionalProperties": false,
            "properties": {
                "from": {"type": "string", "enum": ["inside", "outside"]},
                "action": {"type": "string", "enum": ["commit", "update"]},
                "streams": {"type": "array", "items": {
                    "type": "object",
                    "required": ["addr", "rtp_port"],
                    "additionalProperties": false,
                    "properties": {
                        "addr": {"type": "string"},
                        "rtp_port": {"type": "integer", "minimum": 0, "maximum": 65535},
                        "rtcp_port": {"type": "integer", "minimum": 0, "maximum": 65535},
                        "rtcp_mux": {"type": "boolean"},
                        "direction": {"type": "string",
                            "enum": ["sendrecv", "sendonly", "recvonly", "inactive"]}
                    }
                }}
            }
        }
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No content",
        400 => "Malformed request (JSON error body)",
        401 => "Missing or wrong bearer token",
        403 => "Read-only token used for a write",
        404 => "No such resource",
        409 => "Conflict with the SBC's state (see the error)",
        413 => "Body larger than the limit",
        415 => "Body is not application/json",
        422 => "Refused: every problem listed with its key path; nothing changed",
        503 => "Not available (starting, stopping, or no media ports)",
        _ => "See the error",
    }
}

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPS {
        let mut responses = Map::new();
        let mut statuses: Vec<u16> = o.responses.to_vec();
        if o.access != Access::Open {
            statuses.push(401);
        }
        if o.access == Access::Write {
            statuses.push(403);
        }
        if o.body.is_some() {
            statuses.push(413);
        }
        statuses.sort_unstable();
        statuses.dedup();
        for s in statuses {
            let content = match s {
                204 => None,
                200 | 503 if o.text => Some(json!({"text/plain": {"schema": {"type": "string"}}})),
                200 | 201 => Some(json!({"application/json": {"schema": {}}})),
                _ => Some(
                    json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}),
                ),
            };
            let mut r = json!({"description": reason(s)});
            if let Some(c) = content {
                r["content"] = c;
            }
            responses.insert(s.to_string(), r);
        }
        let params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": if name == "id" {json!({"type": "integer", "minimum": 0})}
                                 else {json!({"type": "string"})}})
            })
            .collect();
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{}{}", o.method.to_lowercase(),
                o.path.replace(['/', '{', '}', '.'], "_")),
            "responses": responses,
        });
        if !params.is_empty() {
            operation["parameters"] = Value::Array(params);
        }
        if o.access == Access::Open {
            operation["security"] = json!([]);
        }
        if let Some(b) = o.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json":
                {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        let entry = paths
            .entry(o.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[o.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "sbc admin API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Admin API of the SIP trunk SBC. Bearer tokens: the admin \
                    token reads and writes, the read token only reads; with no token \
                    configured (loopback only) no header is needed."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_in_the_document_once() {
        let doc = document();
        let mut seen = std::collections::HashSet::new();
        for o in OPS {
            assert!(
                seen.insert((o.method, o.path)),
                "duplicate {} {}",
                o.method,
                o.path
            );
            assert!(doc["paths"][o.path][o.method.to_lowercase()].is_object());
        }
    }
}
