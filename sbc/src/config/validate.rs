//! Semantic checks that types alone cannot express. Each returns `(key path, reason)`.

use std::collections::HashSet;

use super::{Config, Side, XdpMode};

/// Every semantic problem in `c`, as `(key path, reason)`, in file order where possible.
pub(super) fn validate(c: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |path: &str, msg: String| out.push((path.to_owned(), msg));

    if c.general.instance.is_empty()
        || c.general.instance.len() > 64
        || !c
            .general
            .instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bad(
            "general.instance",
            "must be 1-64 characters of [A-Za-z0-9_-]".into(),
        );
    }
    if c.general.user_agent.bytes().any(|b| b.is_ascii_control()) {
        bad(
            "general.user_agent",
            "must not contain control characters".into(),
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&c.log.level) {
        bad("log.level", format!("not a valid log filter: {e}"));
    }

    let s = &c.sip;
    if s.t1_ms == 0 {
        bad("sip.t1_ms", "must be greater than 0".into());
    }
    if s.t2_ms < s.t1_ms {
        bad("sip.t2_ms", format!("must be at least t1_ms ({})", s.t1_ms));
    }
    if s.t4_ms == 0 {
        bad("sip.t4_ms", "must be greater than 0".into());
    }
    // RFC 3261 §16.6 item 11: Timer C MUST be greater than 3 minutes;
    // 180 s is the conventional default, so accept it.
    if s.timer_c_s < 180 {
        bad(
            "sip.timer_c_s",
            "must be at least 180 (RFC 3261 §16.6)".into(),
        );
    }
    if !(1500..=1_048_576).contains(&s.max_message_size) {
        bad(
            "sip.max_message_size",
            "must be between 1500 and 1048576 bytes".into(),
        );
    }
    if !(16..=1024).contains(&s.max_headers) {
        bad("sip.max_headers", "must be between 16 and 1024".into());
    }

    side("inside", &c.inside, &mut bad);
    side("outside", &c.outside, &mut bad);
    for (proto, ins, outs) in [
        ("udp", &c.inside.udp, &c.outside.udp),
        ("tcp", &c.inside.tcp, &c.outside.tcp),
    ] {
        for (i, a) in outs.iter().enumerate() {
            if ins.contains(a) {
                bad(
                    &format!("outside.{proto}[{i}]"),
                    format!("{a} is also an inside {proto} listener; the sides must differ"),
                );
            }
        }
    }

    if c.pbx.allow.is_empty() {
        bad(
            "pbx.allow",
            "must list at least one network the PBX sends from".into(),
        );
    }
    if c.pbx.address.port() == 0 || c.pbx.address.ip().is_unspecified() {
        bad("pbx.address", "must be a concrete address and port".into());
    }

    if c.trunks.is_empty() {
        bad("trunk", "at least one [[trunk]] is required".into());
    }
    let mut names = HashSet::new();
    for (i, t) in c.trunks.iter().enumerate() {
        if t.name.is_empty()
            || t.name.len() > 64
            || !t
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bad(
                &format!("trunk[{i}].name"),
                "must be 1-64 characters of [A-Za-z0-9_-]".into(),
            );
        } else if !names.insert(t.name.as_str()) {
            bad(
                &format!("trunk[{i}].name"),
                format!("duplicate trunk name `{}`", t.name),
            );
        }
        if t.proxy.port() == 0 || t.proxy.ip().is_unspecified() {
            bad(
                &format!("trunk[{i}].proxy"),
                "must be a concrete address and port".into(),
            );
        }
    }

    let m = &c.media;
    if m.port_min < 1024 || !m.port_min.is_multiple_of(2) {
        bad(
            "media.port_min",
            "must be an even port of at least 1024 (RTP is even)".into(),
        );
    }
    if m.port_max <= m.port_min || u32::from(m.port_max) - u32::from(m.port_min) < 3 {
        bad(
            "media.port_max",
            format!("must exceed port_min ({}) by at least 3", m.port_min),
        );
    }
    if matches!(m.xdp, XdpMode::Native | XdpMode::Generic) && m.interfaces.is_empty() {
        bad(
            "media.interfaces",
            "xdp = native/generic needs the media interfaces listed".into(),
        );
    }
    let mut seen = HashSet::new();
    for (i, name) in m.interfaces.iter().enumerate() {
        if name.is_empty()
            || name.len() > 15
            || name
                .bytes()
                .any(|b| b == b'/' || b.is_ascii_whitespace() || b == 0)
        {
            bad(
                &format!("media.interfaces[{i}]"),
                "not a valid interface name".into(),
            );
        } else if !seen.insert(name) {
            bad(
                &format!("media.interfaces[{i}]"),
                format!("duplicate interface `{name}`"),
            );
        }
    }
    if c.admin.listen.port() == 0 {
        bad("admin.listen", "needs a port".into());
    }
    out
}

fn side(name: &str, s: &Side, bad: &mut impl FnMut(&str, String)) {
    if s.udp.is_empty() && s.tcp.is_empty() {
        bad(
            &format!("{name}.udp"),
            "each side needs at least one udp or tcp listener".into(),
        );
    }
    for (proto, list) in [("udp", &s.udp), ("tcp", &s.tcp)] {
        let mut seen = HashSet::new();
        for (i, a) in list.iter().enumerate() {
            if !seen.insert(a) {
                bad(
                    &format!("{name}.{proto}[{i}]"),
                    format!("duplicate listener {a}"),
                );
            }
        }
    }
    if s.media_address.is_unspecified() && s.advertised_address.is_none() {
        bad(
            &format!("{name}.media_address"),
            "an unspecified address needs advertised_address for SDP".into(),
        );
    }
    if let Some(a) = s.advertised_address
        && a.is_unspecified()
    {
        bad(
            &format!("{name}.advertised_address"),
            "must be a concrete address".into(),
        );
    }
}
