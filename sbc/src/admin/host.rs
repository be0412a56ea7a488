//! The `Host` check of the admin API, against DNS rebinding.
//!
//! A web page the operator opens in a browser on the SBC host (or on the management network)
//! can make the browser send requests to `http://attacker.example:8080/` after re-pointing that
//! name at 127.0.0.1: the same-origin policy then lets the page read the answers, and with no
//! token configured (allowed on loopback) change the configuration. The browser still sends
//! the attacker's name in `Host`. So a request is served only when its `Host` (and the
//! authority of an absolute-form target, if any) names the SBC: an IP address literal (which
//! no rebinding can produce), `localhost`, or one of `[admin] hosts`. Anything else is refused
//! with **421 Misdirected Request** (RFC 9110 §15.5.20: this server does not answer for that
//! name), a request without a usable `Host` with **400** (RFC 9112 §3.2), before the token
//! check, on every path including `/healthz` and `/metrics`; each refusal is counted in
//! `sbc_admin_requests_refused_total{reason="host"}`.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{AdminState, error::ApiError};

/// Counters of requests the admin API refused before any handler ran.
#[derive(Debug, Clone)]
pub struct AdminMetrics {
    refused: prometheus::IntCounterVec,
}

impl AdminMetrics {
    /// Creates and registers the counters.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "sbc_admin_requests_refused_total",
                "Admin API requests refused before any handler ran, by reason (host: Host \
                 header not an address, localhost or a configured name).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        // Present from the start, so a rate can be taken before the first refusal.
        refused.with_label_values(&["host"]);
        Ok(Self { refused })
    }
}

/// Why a `Host` is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// Missing, repeated, or not `host[:port]`.
    Malformed,
    /// A name that is neither `localhost` nor configured.
    UnknownName(String),
}

/// The host part of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`), lower-cased.
fn host_part(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(v6.to_ascii_lowercase());
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => authority,
        }
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `authority` names this SBC: an IP literal, `localhost`, or one of `names` (lower
/// case, compared case-insensitively).
fn check(authority: &str, names: &[String]) -> Result<(), Refusal> {
    let host = host_part(authority.trim()).ok_or(Refusal::Malformed)?;
    if host.parse::<IpAddr>().is_ok()
        || host == "localhost"
        || names.iter().any(|n| n.eq_ignore_ascii_case(&host))
    {
        Ok(())
    } else {
        Err(Refusal::UnknownName(host))
    }
}

/// The middleware (see the module documentation).
pub async fn guard(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let config = s.config.current();
    let names = &config.admin.hosts;
    let mut values = req.headers().get_all(header::HOST).iter();
    let verdict = match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .map_err(|_| Refusal::Malformed)
            .and_then(|h| check(h, names)),
        _ => Err(Refusal::Malformed),
    }
    .and_then(|()| match req.uri().authority() {
        Some(a) => check(a.as_str(), names),
        None => Ok(()),
    });
    match verdict {
        Ok(()) => next.run(req).await,
        Err(r) => {
            s.admin_metrics.refused.with_label_values(&["host"]).inc();
            tracing::debug!(refusal = ?r, "admin request refused by the Host check");
            match r {
                Refusal::Malformed => {
                    ApiError::bad_request("a single Host header naming this server is required")
                        .into_response()
                }
                Refusal::UnknownName(_) => ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Host names no address or name of this SBC (IP address, localhost or \
                     [admin] hosts); refused against DNS rebinding",
                )
                .into_response(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_localhost_and_configured_names_pass() {
        let names = vec!["sbc.mgmt.example".to_owned()];
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:8080",
            "[::1]",
            "[fe80::1]:8080",
            "localhost:8080",
            "LocalHost",
            "sbc.mgmt.example:8080",
            "SBC.Mgmt.Example",
        ] {
            assert_eq!(check(ok, &names), Ok(()), "{ok}");
        }
    }

    #[test]
    fn other_names_and_malformed_values_are_refused() {
        let names = vec!["sbc.mgmt.example".to_owned()];
        for name in [
            "attacker.example:8080",
            "attacker.example",
            "localhost.",
            "localhost.attacker.example",
            "sbc.mgmt.example.attacker.example",
            "127.0.0.1.nip.io:8080",
            "0x7f000001",
        ] {
            assert!(
                matches!(check(name, &names), Err(Refusal::UnknownName(_))),
                "{name}"
            );
        }
        for bad in [
            "",
            ":8080",
            "[::1",
            "[::1]x",
            "[nothost]:80",
            "a:b:c",
            "h:99999999",
        ] {
            assert_eq!(check(bad, &names), Err(Refusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn configured_names_are_validated_with_their_key_paths() {
        // The shipped config with `hosts` added to its [admin] table.
        let with_hosts = |hosts: &str| {
            crate::config::SHIPPED_DEFAULT.replacen(
                "[admin]\n",
                &format!("[admin]\nhosts = {hosts}\n"),
                1,
            )
        };
        let problems = crate::config::parse(&with_hosts(
            r#"["sbc.example.net", "bad name", "10.0.0.1", "x.example."]"#,
        ))
        .expect_err("invalid names");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["admin.hosts[1]", "admin.hosts[2]", "admin.hosts[3]"]
        );
        let c = crate::config::parse(&with_hosts(r#"["SBC.example.net"]"#)).expect("valid");
        assert_eq!(check("sbc.example.net:8080", &c.admin.hosts), Ok(()));
    }
}
