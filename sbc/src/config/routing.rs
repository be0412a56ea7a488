//! Compiles the routing sections (`[[route]]`, `[[inbound]]`, `[[trunk.number]]`,
//! `[[trunk.header]]`) into the B2BUA's types, reporting every bad pattern or rule with its key
//! path. Validation and the running configuration use the same compiler, so what
//! `check-config` accepts is exactly what runs.

use regex::Regex;
use sbc_proto::{
    b2bua::{Manipulation, Target},
    routing::{self, HeaderAction, NumberMatch},
};

use super::{CallDirection, Config, HeaderRule, NumberKind, NumberRule};

/// The routing sections, compiled.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// Per trunk (configuration order): rules toward the carrier, rules toward the PBX.
    pub trunks: Vec<(Manipulation, Manipulation)>,
    /// Outbound routes, in order.
    pub routes: Vec<routing::OutboundRoute>,
    /// Inbound routes, in order.
    pub inbound: Vec<routing::InboundRoute>,
}

/// Longest pattern accepted; the regex crate's matching is linear in the input, but a huge
/// pattern is a configuration mistake.
const MAX_PATTERN: usize = 1024;

/// Characters a number (and so a prefix that is added) may consist of: RFC 3261 user-part
/// characters that need no escaping and cannot end the URI.
fn number_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+*#-_.!~()".contains(&b))
}

fn matcher(
    path: &str,
    prefix: Option<&str>,
    pattern: Option<&str>,
    bad: &mut Vec<(String, String)>,
) -> NumberMatch {
    match (prefix, pattern) {
        (Some(_), Some(_)) => {
            bad.push((
                format!("{path}.match"),
                "give either prefix or match, not both".into(),
            ));
            NumberMatch::Any
        }
        (Some(p), None) => {
            if !number_chars(p) {
                bad.push((
                    format!("{path}.prefix"),
                    "must be digits, letters or +*#-_.!~()".into(),
                ));
            }
            NumberMatch::Prefix(p.to_owned())
        }
        (None, Some(r)) if r.len() > MAX_PATTERN => {
            bad.push((
                format!("{path}.match"),
                format!("longer than {MAX_PATTERN} characters"),
            ));
            NumberMatch::Any
        }
        (None, Some(r)) => match Regex::new(r) {
            Ok(re) => NumberMatch::Regex(re),
            Err(e) => {
                bad.push((
                    format!("{path}.match"),
                    format!("not a valid regular expression: {e}"),
                ));
                NumberMatch::Any
            }
        },
        (None, None) => NumberMatch::Any,
    }
}

fn number_rule(path: &str, r: &NumberRule, bad: &mut Vec<(String, String)>) -> routing::NumberRule {
    let m = matcher(path, r.prefix.as_deref(), r.pattern.as_deref(), bad);
    if r.replace.is_some() && r.pattern.is_none() {
        bad.push((format!("{path}.replace"), "needs match".into()));
    }
    if !number_chars(&r.add) {
        bad.push((
            format!("{path}.add"),
            "must be digits, letters or +*#-_.!~()".into(),
        ));
    }
    // `$1` etc. are allowed in the replacement; what they expand to comes from the number.
    if r.replace
        .as_deref()
        .is_some_and(|v| !number_chars(&v.replace(['$', '{', '}'], "")))
    {
        bad.push((
            format!("{path}.replace"),
            "must be digits, letters, +*#-_.!~() and $n group references".into(),
        ));
    }
    if r.strip > 64 {
        bad.push((format!("{path}.strip"), "must be 0-64".into()));
    }
    routing::NumberRule {
        matcher: m,
        replace: r.replace.clone(),
        strip: r.strip,
        add: r.add.clone(),
    }
}

fn header_rule(
    path: &str,
    h: &HeaderRule,
    bad: &mut Vec<(String, String)>,
) -> Option<routing::HeaderRule> {
    let action = match h.action {
        super::HeaderAction::Add => HeaderAction::Add,
        super::HeaderAction::Set => HeaderAction::Set,
        super::HeaderAction::Remove => HeaderAction::Remove,
    };
    match routing::HeaderRule::new(action, &h.name, h.value.as_deref()) {
        Ok(r) => Some(r),
        Err(e) => {
            let key = match e {
                routing::RuleError::BadName(_) | routing::RuleError::Protected(_) => "name",
                _ => "value",
            };
            bad.push((format!("{path}.{key}"), e.to_string()));
            None
        }
    }
}

/// Compiles the routing sections of `c`; the problems found (key path, reason) come with a
/// best-effort result (bad entries left out or matching every number).
pub fn compile(c: &Config) -> (Compiled, Vec<(String, String)>) {
    let mut bad = Vec::new();
    let mut out = Compiled::default();
    for (i, t) in c.trunks.iter().enumerate() {
        let mut outbound = Manipulation::default();
        let mut inbound = Manipulation::default();
        for (j, r) in t.numbers.iter().enumerate() {
            let rule = number_rule(&format!("trunk[{i}].number[{j}]"), r, &mut bad);
            let m = match r.direction {
                CallDirection::Outbound => &mut outbound,
                CallDirection::Inbound => &mut inbound,
            };
            match r.number {
                NumberKind::Called => m.called.push(rule),
                NumberKind::Calling => m.calling.push(rule),
            }
        }
        for (j, h) in t.headers.iter().enumerate() {
            if let Some(rule) = header_rule(&format!("trunk[{i}].header[{j}]"), h, &mut bad) {
                match h.direction {
                    CallDirection::Outbound => outbound.headers.push(rule),
                    CallDirection::Inbound => inbound.headers.push(rule),
                }
            }
        }
        out.trunks.push((outbound, inbound));
    }

    let mut names = std::collections::HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let path = format!("route[{i}]");
        if r.name.is_empty() || !names.insert(r.name.as_str()) {
            bad.push((
                format!("{path}.name"),
                format!("must be a unique, non-empty name (`{}`)", r.name),
            ));
        }
        let m = matcher(&path, r.prefix.as_deref(), r.pattern.as_deref(), &mut bad);
        if r.trunks.is_empty() {
            bad.push((
                format!("{path}.trunks"),
                "must name at least one trunk".into(),
            ));
        }
        let mut trunks = Vec::new();
        for name in &r.trunks {
            match c.trunks.iter().position(|t| &t.name == name) {
                Some(t) if trunks.contains(&t) => bad.push((
                    format!("{path}.trunks"),
                    format!("trunk `{name}` is listed twice"),
                )),
                Some(t) => trunks.push(t),
                None => bad.push((
                    format!("{path}.trunks"),
                    format!("no [[trunk]] is named `{name}`"),
                )),
            }
        }
        if let Some(w) = &r.weights
            && (w.len() != r.trunks.len() || w.iter().all(|w| *w == 0))
        {
            bad.push((
                format!("{path}.weights"),
                "needs one weight per trunk, not all 0".into(),
            ));
        }
        out.routes.push(routing::OutboundRoute {
            name: r.name.clone(),
            matcher: m,
            trunks,
            weights: r.weights.clone(),
        });
    }

    let mut names = std::collections::HashSet::new();
    for (i, r) in c.inbound.iter().enumerate() {
        let path = format!("inbound[{i}]");
        if r.name.is_empty() || !names.insert(r.name.as_str()) {
            bad.push((
                format!("{path}.name"),
                format!("must be a unique, non-empty name (`{}`)", r.name),
            ));
        }
        let m = matcher(&path, r.prefix.as_deref(), r.pattern.as_deref(), &mut bad);
        let ip = r.target.ip().to_canonical();
        if r.target.port() == 0 || ip.is_unspecified() {
            bad.push((
                format!("{path}.target"),
                "must be a concrete address and port".into(),
            ));
        } else if !c.pbx.allow.iter().any(|n| n.contains(&ip)) {
            // Its answers would come from an address the inside ACL drops.
            bad.push((
                format!("{path}.target"),
                format!("{ip} is not inside [pbx] allow"),
            ));
        }
        out.inbound.push(routing::InboundRoute {
            name: r.name.clone(),
            matcher: m,
            target: Target {
                addr: r.target,
                transport: r.transport.unwrap_or(c.pbx.transport).kind(),
            },
        });
    }
    (out, bad)
}
