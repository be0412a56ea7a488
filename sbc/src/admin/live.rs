//! Live reconfiguration: one path for `PUT`/`PATCH /api/v1/config`, the trunk endpoints,
//! `POST /api/v1/reload` and SIGHUP.
//!
//! A change is a whole candidate configuration. It goes through the same `config::parse` as
//! the file at start-up (so the API reports the same key paths and reasons as
//! `sbc check-config`), is refused with every problem if invalid, is written to the config file
//! atomically (temporary file + fsync + rename) and only then handed to the call layer, which
//! uses it for new calls while calls in progress keep their own settings. Changes serialize on
//! one lock, so two writers cannot interleave.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::http::StatusCode;
use serde_json::Value;

use super::{
    auth::EnvTokens,
    error::{ApiError, ProblemJson},
    persist,
};
use crate::{config::Config, signaling::SignalingHandle};

/// Placeholder shown instead of a token in `GET /api/v1/config`; sending it back keeps the
/// current token.
pub const REDACTED: &str = "<redacted>";

/// Keys that take effect on new calls without a restart; any other changed key is written
/// to the file and reported as needing a restart.
/// (`log` is not among them: the log filter is installed once at start.)
const LIVE_KEYS: [&str; 14] = [
    "limits",
    // The resolver task follows `[dns]` changes (a new resolver, every name asked again).
    "dns",
    "pbx",
    "trunk",
    "route",
    "inbound",
    "sip.t1_ms",
    "sip.t2_ms",
    "sip.t4_ms",
    "sip.timer_c_s",
    "general.user_agent",
    "admin.token",
    "admin.read_token",
    // Read by the Host check on every request.
    "admin.hosts",
];

/// The running configuration and where it is persisted.
#[derive(Debug)]
pub struct LiveConfig {
    current: parking_lot::RwLock<Arc<Config>>,
    /// Serializes changes (held across the file write and the call layer's answer).
    write: tokio::sync::Mutex<()>,
    path: Option<PathBuf>,
    env: EnvTokens,
    /// The admin API's bound address: `admin.listen` at start, until a restart.
    listening: SocketAddr,
}

/// What a successful change did.
#[derive(Debug, serde::Serialize)]
pub struct Applied {
    /// Key paths whose value changed.
    pub changed: Vec<String>,
    /// Of those, the ones that only take effect after a restart (listeners, media, admin
    /// listen address, TLS files): already persisted.
    pub restart_required: Vec<String>,
    /// Whether the file was written.
    pub persisted: bool,
}

impl LiveConfig {
    /// `path` is the file the daemon was started with (`None`: the built-in default, which
    /// cannot be changed through the API).
    pub fn new(config: Config, path: Option<PathBuf>, env: EnvTokens) -> Self {
        Self {
            listening: config.admin.listen,
            current: parking_lot::RwLock::new(Arc::new(config)),
            write: tokio::sync::Mutex::new(()),
            path,
            env,
        }
    }

    /// The running configuration.
    pub fn current(&self) -> Arc<Config> {
        self.current.read().clone()
    }

    /// Tokens from the environment.
    pub fn env_tokens(&self) -> &EnvTokens {
        &self.env
    }

    /// The file changes are written to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The running configuration as JSON, with tokens replaced by [`REDACTED`].
    pub fn redacted_json(&self) -> Value {
        let mut v = to_json(&self.current());
        if let Some(admin) = v.get_mut("admin").and_then(Value::as_object_mut) {
            for key in ["token", "read_token"] {
                if let Some(t) = admin.get_mut(key) {
                    *t = Value::String(REDACTED.into());
                }
            }
        }
        if let Some(trunks) = v.get_mut("trunk").and_then(Value::as_array_mut) {
            for t in trunks.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(p) = t.get_mut("password") {
                    *p = Value::String(REDACTED.into());
                }
            }
        }
        if let Some(p) = v.get_mut("pbx").and_then(|p| p.get_mut("password")) {
            *p = Value::String(REDACTED.into());
        }
        // The CDR database URL carries its password.
        if let Some(p) = v.get_mut("cdr").and_then(|p| p.get_mut("postgres")) {
            *p = Value::String(REDACTED.into());
        }
        // So does the call state store's URL; the takeover token is a secret.
        for key in ["redis", "takeover_token"] {
            if let Some(p) = v.get_mut("state").and_then(|p| p.get_mut(key))
                && !p.is_null()
            {
                *p = Value::String(REDACTED.into());
            }
        }
        v
    }

    /// Validates `candidate` (JSON of a whole configuration) and, if valid, persists and
    /// applies it. `origin` names the source in the log (`api`, `sighup`, `reload`).
    pub async fn apply_json(
        &self,
        signaling: &SignalingHandle,
        mut candidate: Value,
        origin: &str,
    ) -> Result<Applied, ApiError> {
        let _guard = self.write.lock().await;
        let current = self.current();
        unredact(&mut candidate, &current);
        let config = validate_json(&candidate)?;
        self.commit(signaling, &current, config, origin, true).await
    }

    /// Builds a candidate from the current configuration with `edit`, then applies it like
    /// [`Self::apply_json`]. The edit runs under the write lock, so it sees the latest state.
    pub async fn edit(
        &self,
        signaling: &SignalingHandle,
        origin: &str,
        edit: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Applied, ApiError> {
        let _guard = self.write.lock().await;
        let current = self.current();
        let mut candidate = to_json(&current);
        edit(&mut candidate)?;
        let config = validate_json(&candidate)?;
        self.commit(signaling, &current, config, origin, true).await
    }

    /// Re-reads the file (SIGHUP, `POST /api/v1/reload`) and applies it; the file is the
    /// source, so it is not rewritten.
    pub async fn reload(
        &self,
        signaling: &SignalingHandle,
        origin: &str,
    ) -> Result<Applied, ApiError> {
        let _guard = self.write.lock().await;
        let Some(path) = &self.path else {
            return Err(no_file());
        };
        let config = match crate::config::load_file(path) {
            Ok((c, _)) => c,
            Err(crate::config::LoadError::Io { path, source }) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("cannot read {path}: {source}"),
                ));
            }
            Err(crate::config::LoadError::Invalid { problems, .. }) => {
                return Err(ApiError::invalid(problems_json(problems)));
            }
        };
        let current = self.current();
        self.commit(signaling, &current, config, origin, false)
            .await
    }

    async fn commit(
        &self,
        signaling: &SignalingHandle,
        current: &Config,
        config: Config,
        origin: &str,
        persist: bool,
    ) -> Result<Applied, ApiError> {
        let changed = diff(&to_json(current), &to_json(&config));
        if changed.is_empty() {
            return Ok(Applied {
                changed,
                restart_required: Vec::new(),
                persisted: false,
            });
        }
        self.keeps_admin_closed(&config)?;
        if persist {
            let Some(path) = &self.path else {
                return Err(no_file());
            };
            write_config(path, &config).map_err(|e| {
                tracing::warn!(%origin, error = %e, "configuration change refused: the file could not be written");
                ApiError::new(e.status(), format!("{e}; nothing was changed"))
            })?;
        }
        if !signaling.reconfigure(&config).await {
            // Only during shutdown; the file already holds the change for the next start.
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call layer is stopping",
            ));
        }
        config.warn_at_load();
        *self.current.write() = Arc::new(config);
        let restart_required: Vec<String> = changed
            .iter()
            .filter(|k| {
                !LIVE_KEYS
                    .iter()
                    .any(|l| k == l || k.starts_with(&format!("{l}.")))
            })
            .cloned()
            .collect();
        tracing::info!(
            %origin,
            changed = %changed.join(", "),
            restart_required = %restart_required.join(", "),
            persisted = persist,
            "configuration changed"
        );
        Ok(Applied {
            changed,
            restart_required,
            persisted: persist,
        })
    }
}

impl LiveConfig {
    /// Refuses (422) a configuration that would leave the admin API reachable from the
    /// network without a token: on the address it is bound to now, or on the one it would
    /// bind after a restart (which the daemon would refuse to start with). Environment tokens
    /// count, as at start.
    fn keeps_admin_closed(&self, config: &Config) -> Result<(), ApiError> {
        if self.env.any(config) {
            return Ok(());
        }
        let exposed: Vec<SocketAddr> = [self.listening, config.admin.listen]
            .into_iter()
            .filter(|a| !a.ip().is_loopback())
            .collect();
        let Some(addr) = exposed.first() else {
            return Ok(());
        };
        let mut e = ApiError::invalid(vec![ProblemJson {
            path: "admin.token".into(),
            message: format!(
                "the admin API listens on {addr}, which is not a loopback address: it needs a \
                 token (admin.token or SBC_ADMIN_TOKEN)"
            ),
        }]);
        e.error = "configuration refused: the admin API would be reachable from the network \
                   without a token; nothing was changed"
            .into();
        Err(e)
    }
}

fn no_file() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "the SBC runs on its built-in default configuration (no --config file and no \
         ./config/sbc.toml), so there is no file to persist or re-read; start it with --config",
    )
}

fn to_json(c: &Config) -> Value {
    // Config serializes to plain data (strings, numbers, arrays, tables): this cannot fail.
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    v
}

/// Unset optional keys serialize as `null`; TOML has no null, and leaving a key out means
/// its default, so they are dropped.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Puts the current tokens back where the candidate carries [`REDACTED`].
fn unredact(candidate: &mut Value, current: &Config) {
    // Trunk passwords: matched by trunk name, so reordering trunks keeps each one's password.
    if let Some(trunks) = candidate.get_mut("trunk").and_then(Value::as_array_mut) {
        for t in trunks.iter_mut().filter_map(Value::as_object_mut) {
            if t.get("password").and_then(Value::as_str) != Some(REDACTED) {
                continue;
            }
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            match current
                .trunks
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.password.as_ref())
            {
                Some(p) => t.insert("password".into(), Value::String(p.0.clone())),
                None => t.remove("password"),
            };
        }
    }
    // The PBX password: there is one PBX, so the redacted value stands for the current one.
    if let Some(pbx) = candidate.get_mut("pbx").and_then(Value::as_object_mut)
        && pbx.get("password").and_then(Value::as_str) == Some(REDACTED)
    {
        match &current.pbx.password {
            Some(p) => pbx.insert("password".into(), Value::String(p.0.clone())),
            None => pbx.remove("password"),
        };
    }
    if let Some(cdr) = candidate.get_mut("cdr").and_then(Value::as_object_mut)
        && cdr.get("postgres").and_then(Value::as_str) == Some(REDACTED)
    {
        match &current.cdr.postgres {
            Some(p) => cdr.insert("postgres".into(), Value::String(p.0.clone())),
            None => cdr.remove("postgres"),
        };
    }
    if let Some(state) = candidate.get_mut("state").and_then(Value::as_object_mut)
        && state.get("redis").and_then(Value::as_str) == Some(REDACTED)
        && let Some(current) = &current.state
    {
        state.insert("redis".into(), Value::String(current.redis.0.clone()));
    }
    if let Some(state) = candidate.get_mut("state").and_then(Value::as_object_mut)
        && state.get("takeover_token").and_then(Value::as_str) == Some(REDACTED)
        && let Some(current) = &current.state
    {
        match &current.takeover_token {
            Some(t) => state.insert("takeover_token".into(), Value::String(t.0.clone())),
            None => state.remove("takeover_token"),
        };
    }
    let Some(admin) = candidate.get_mut("admin").and_then(Value::as_object_mut) else {
        return;
    };
    for (key, value) in [
        ("token", &current.admin.token),
        ("read_token", &current.admin.read_token),
    ] {
        if admin.get(key).and_then(Value::as_str) == Some(REDACTED) {
            match value {
                Some(v) => admin.insert(key.into(), Value::String(v.clone())),
                None => admin.remove(key),
            };
        }
    }
}

/// Runs a JSON candidate through the same parser and validator as the file.
pub fn validate_json(candidate: &Value) -> Result<Config, ApiError> {
    if !candidate.is_object() {
        return Err(ApiError::invalid(vec![ProblemJson {
            path: String::new(),
            message: "the configuration must be a JSON object".into(),
        }]));
    }
    let mut nulls = Vec::new();
    find_nulls(candidate, String::new(), &mut nulls);
    if !nulls.is_empty() {
        return Err(ApiError::invalid(
            nulls
                .into_iter()
                .map(|path| ProblemJson {
                    path,
                    message: "null is not a value; leave the key out for its default".into(),
                })
                .collect(),
        ));
    }
    let text = toml::Value::try_from(candidate)
        .map_err(|e| e.to_string())
        .and_then(|v| toml::to_string(&v).map_err(|e| e.to_string()))
        .map_err(|e| {
            ApiError::invalid(vec![ProblemJson {
                path: String::new(),
                message: format!("not representable as a configuration: {e}"),
            }])
        })?;
    crate::config::parse(&text).map_err(|p| ApiError::invalid(problems_json(p)))
}

fn problems_json(problems: Vec<crate::config::Problem>) -> Vec<ProblemJson> {
    problems
        .into_iter()
        .map(|p| ProblemJson {
            path: p.path,
            message: p.message,
        })
        .collect()
}

fn find_nulls(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Null => out.push(path),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                find_nulls(x, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                find_nulls(x, p, out);
            }
        }
        _ => {}
    }
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes a key, anything else
/// (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Changed key paths, two levels deep (`media.port_min`, `trunk`), tokens included by name
/// only (values are never logged).
fn diff(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: BTreeMap<&String, ()> = o.keys().map(|k| (k, ())).collect();
    keys.extend(n.keys().map(|k| (k, ())));
    let mut out = Vec::new();
    for k in keys.into_keys() {
        match (o.get(k), n.get(k)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let mut sub: BTreeMap<&String, ()> = a.keys().map(|k| (k, ())).collect();
                sub.extend(b.keys().map(|k| (k, ())));
                for s in sub.into_keys() {
                    if a.get(s) != b.get(s) {
                        out.push(format!("{k}.{s}"));
                    }
                }
            }
            (a, b) if a != b => out.push(k.clone()),
            _ => {}
        }
    }
    out
}

/// Writes `config` to `path` through [`persist::replace`] (mode and owner kept, the old file
/// intact on any error).
fn write_config(path: &Path, config: &Config) -> Result<(), persist::PersistError> {
    // Config serializes to plain data; an error here would be a bug, reported like a write
    // failure rather than a panic.
    let text = toml::to_string(config).map_err(|e| persist::PersistError::Io {
        path: path.to_path_buf(),
        step: "serializing the configuration",
        source: std::io::Error::other(e),
    })?;
    let header = "# Written by the sbc admin API (live reconfiguration); comments of the \
                  original file are not kept.\n# The documented example is config/sbc.toml.\n\n";
    persist::replace(path, format!("{header}{text}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Config {
        crate::config::parse(crate::config::SHIPPED_DEFAULT).expect("default")
    }

    #[test]
    fn serialized_config_parses_back_identically() {
        let mut c = shipped();
        c.admin.token = Some("0123456789abcdefgh".into());
        let text = toml::to_string(&c).expect("serialize");
        assert_eq!(crate::config::parse(&text).expect("parse back"), c);
        assert_eq!(validate_json(&to_json(&c)).expect("json back"), c);
    }

    #[test]
    fn bad_candidates_list_every_problem_with_its_path() {
        let mut v = to_json(&shipped());
        merge_patch(
            &mut v,
            &serde_json::json!({"media": {"port_min": 3}, "sip": {"t1_ms": "fast"}, "bogus": 1}),
        );
        let e = validate_json(&v).expect_err("invalid");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"bogus"), "{paths:?}");
        assert!(paths.contains(&"sip.t1_ms"), "{paths:?}");
        let e = validate_json(&serde_json::json!({"pbx": null})).expect_err("null");
        assert_eq!(e.problems[0].path, "pbx");
        assert!(validate_json(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut v = serde_json::json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge_patch(
            &mut v,
            &serde_json::json!({"a": {"b": null, "e": 3}, "d": [3]}),
        );
        assert_eq!(v, serde_json::json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn diff_names_changed_keys() {
        let a = to_json(&shipped());
        let mut b = a.clone();
        merge_patch(
            &mut b,
            &serde_json::json!({"media": {"timeout_s": 5}, "trunk": []}),
        );
        assert_eq!(diff(&a, &b), ["media.timeout_s", "trunk"]);
    }

    #[test]
    fn pbx_password_is_redacted_and_restored() {
        let mut c = shipped();
        c.pbx.username = Some("pbx".into());
        c.pbx.password = Some(crate::config::Password("pbx-s3cret".into()));
        let live = LiveConfig::new(c.clone(), None, EnvTokens::default());
        let shown = live.redacted_json();
        assert_eq!(shown["pbx"]["password"], REDACTED);
        assert!(!shown.to_string().contains("pbx-s3cret"), "{shown}");
        assert!(!format!("{c:?}").contains("pbx-s3cret"), "Debug hides it");
        // Sending the redacted value back keeps the password.
        let mut candidate = shown;
        unredact(&mut candidate, &c);
        assert_eq!(validate_json(&candidate).expect("valid"), c);
    }

    #[test]
    fn state_store_url_is_redacted_and_restored() {
        let mut c = shipped();
        c.state = Some(crate::config::State {
            redis: crate::config::Password("redis://:st4te-s3cret@127.0.0.1:6379/0".into()),
            node: "sbc-a".into(),
            ttl_s: 300,
            queue: 100,
            timeout_ms: 500,
            load_timeout_s: 5,
            peer: Some("sbc-b".into()),
            lease_s: 15,
            takeover_token: Some(crate::config::Password("t4keover-s3cret-0123".into())),
            peer_alive_ms: 1000,
            cluster: None,
        });
        let live = LiveConfig::new(c.clone(), None, EnvTokens::default());
        let shown = live.redacted_json();
        assert_eq!(shown["state"]["redis"], REDACTED);
        assert!(!shown.to_string().contains("st4te-s3cret"), "{shown}");
        assert_eq!(shown["state"]["takeover_token"], REDACTED);
        assert!(!shown.to_string().contains("t4keover-s3cret"), "{shown}");
        assert!(!format!("{c:?}").contains("st4te-s3cret"), "Debug hides it");
        let mut candidate = shown;
        unredact(&mut candidate, &c);
        assert_eq!(validate_json(&candidate).expect("valid"), c);
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sbc.toml");
        std::fs::write(&path, "old").expect("write");
        write_config(&path, &shipped()).expect("write atomically");
        let (c, _) = crate::config::load_file(&path).expect("reload");
        assert_eq!(c, shipped());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn a_change_may_not_open_a_non_loopback_admin_api() {
        let mut exposed = shipped();
        exposed.admin.listen = "192.0.2.1:8080".parse().expect("literal");
        exposed.admin.token = Some("admin-token-0123456789".into());
        let live = LiveConfig::new(exposed.clone(), None, EnvTokens::default());
        // Removing the token while bound to a non-loopback address: 422 on admin.token.
        let mut open = exposed.clone();
        open.admin.token = None;
        let e = live.keeps_admin_closed(&open).expect_err("refused");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.problems[0].path, "admin.token");
        assert!(e.problems[0].message.contains("192.0.2.1:8080"), "{e:?}");
        // Even when the change also moves the listener to loopback: that needs a restart.
        open.admin.listen = "127.0.0.1:8080".parse().expect("literal");
        assert!(live.keeps_admin_closed(&open).is_err());
        // A read token alone keeps it closed (every request needs a token), as at start.
        open.admin.read_token = Some("read-token-0123456789".into());
        assert!(live.keeps_admin_closed(&open).is_ok());
        assert!(live.keeps_admin_closed(&exposed).is_ok());

        // Bound to loopback: dropping the token is fine, moving off loopback without one not.
        let live = LiveConfig::new(shipped(), None, EnvTokens::default());
        assert!(live.keeps_admin_closed(&shipped()).is_ok());
        let mut moved = shipped();
        moved.admin.listen = "0.0.0.0:8080".parse().expect("literal");
        assert!(live.keeps_admin_closed(&moved).is_err());
    }
}
