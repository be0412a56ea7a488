//! Semantic checks that types alone cannot express. Each returns `(key path, reason)`.

use std::collections::HashSet;

use super::{Config, MAX_MEDIA_ADDRESSES, Side, Transport, XdpMode, XskBusyPoll};

/// Most userspace relay worker threads (`media.relay_workers`).
const MAX_RELAY_WORKERS: usize = 256;

/// Most warm pairs per relay address (`media.warm_pairs`): enough for bursts far beyond what
/// one allocation's top-up refills, few enough descriptors to never matter.
const MAX_WARM_PAIRS: usize = 1_024;

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
    // The systemd unit's TimeoutStopSec (packaging/sbc.service) must stay above the drain
    // timeout plus the BYE wait and the de-registration.
    if c.general.drain_timeout_s > 3600 {
        bad("general.drain_timeout_s", "must be 0-3600".into());
    }
    if c.general.signaling_shards > sbc_proto::shard::MAX_SHARDS {
        bad(
            "general.signaling_shards",
            format!(
                "must be 0 (one per core) or 1-{}",
                sbc_proto::shard::MAX_SHARDS
            ),
        );
    }
    // The call-state store's full rewrite is one core's calls: sharding it is not built.
    if c.general.signaling_shards > 1 && c.state.is_some() {
        bad(
            "general.signaling_shards",
            "must be 0 or 1 while [state] is configured".into(),
        );
    }
    if c.general.drain_retry_after_s > 86_400 {
        bad("general.drain_retry_after_s", "must be 0-86400".into());
    }
    // 64*T1 is the longest a BYE's transaction lives (Timer F); waiting longer gains nothing.
    let timer_f = c.sip.t1_ms.saturating_mul(64);
    if u64::from(c.general.drain_bye_wait_ms) > timer_f {
        bad(
            "general.drain_bye_wait_ms",
            format!("must be 0-{timer_f} (64 * sip.t1_ms, the BYE's Timer F)"),
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

    // RFC 4028 §4: Min-SE is never below 90 s; a session may not be shorter than its Min-SE.
    if !(90..=86_400).contains(&s.min_se) {
        bad("sip.min_se", "must be between 90 and 86400".into());
    }
    if !(s.min_se..=86_400).contains(&s.session_expires) {
        bad(
            "sip.session_expires",
            format!("must be between min_se ({}) and 86400", s.min_se),
        );
    }
    if !(1..=20).contains(&s.max_redirects) {
        bad("sip.max_redirects", "must be between 1 and 20".into());
    }
    for (key, value, range) in [
        ("sip.idle_timeout_s", s.idle_timeout_s, 1..=86_400),
        ("sip.message_timeout_s", s.message_timeout_s, 1..=3_600),
        ("sip.connect_timeout_ms", s.connect_timeout_ms, 100..=60_000),
        (
            "sip.first_message_timeout_s",
            s.first_message_timeout_s,
            1..=60,
        ),
    ] {
        if !range.contains(&value) {
            bad(
                key,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
    }
    for (key, value, range) in [
        ("sip.max_connections", s.max_connections, 1..=1_000_000),
        (
            "sip.max_connections_per_listener",
            s.max_connections_per_listener,
            1..=1_000_000,
        ),
        (
            "sip.max_connections_per_source",
            s.max_connections_per_source,
            1..=1_000_000,
        ),
        ("sip.send_queue", s.send_queue, 1..=65_536),
        ("sip.inbound_queue", s.inbound_queue, 16..=1_048_576),
        ("sip.udp_workers", s.udp_workers, 1..=64),
        (
            "sip.udp_buffer_bytes",
            s.udp_buffer_bytes,
            65_536..=(256 << 20),
        ),
    ] {
        if !range.contains(&value) {
            bad(
                key,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
    }

    side("inside", &c.inside, &mut bad);
    side("outside", &c.outside, &mut bad);
    for (proto, ins, outs) in [
        ("udp", &c.inside.udp, &c.outside.udp),
        ("tcp", &c.inside.tcp, &c.outside.tcp),
        ("tls", &c.inside.tls, &c.outside.tls),
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

    tls(c, &mut bad);

    if c.pbx.allow.is_empty() {
        bad(
            "pbx.allow",
            "must list at least one network the PBX sends from".into(),
        );
    }
    if c.pbx.address.port() == 0 || c.pbx.address.ip().is_unspecified() {
        bad("pbx.address", "must be a concrete address and port".into());
    }
    pbx_auth(&c.pbx, &mut bad);
    super::srtp::validate("pbx", c.pbx.srtp, c.pbx.srtp_suites.as_deref(), &mut bad);
    let (codecs, deny) = (c.pbx.codecs.as_deref(), c.pbx.codecs_deny.as_deref());
    super::media_policy::validate("pbx", codecs, deny, c.pbx.telephone_event_pt, &mut bad);

    if c.trunks.is_empty() {
        bad("trunk", "at least one [[trunk]] is required".into());
    }
    let mut names = HashSet::new();
    for (i, t) in c.trunks.iter().enumerate() {
        let prefix = format!("trunk[{i}]");
        super::srtp::validate(&prefix, t.srtp, t.srtp_suites.as_deref(), &mut bad);
        let (codecs, deny) = (t.codecs.as_deref(), t.codecs_deny.as_deref());
        super::media_policy::validate(&prefix, codecs, deny, t.telephone_event_pt, &mut bad);
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
        if t.max_calls.is_some_and(|v| !(1..=1_000_000).contains(&v)) {
            bad(&format!("trunk[{i}].max_calls"), "must be 1-1000000".into());
        }
        if t.max_cps.is_some_and(|v| !(1..=100_000).contains(&v)) {
            bad(&format!("trunk[{i}].max_cps"), "must be 1-100000".into());
        }
        if t.max_media_ports.is_some_and(|p| p < 2) {
            bad(
                &format!("trunk[{i}].max_media_ports"),
                "must be at least 2 (one stream's RTP and RTCP port)".into(),
            );
        }
        if t.options_interval_s
            .is_some_and(|v| !(1..=3600).contains(&v))
        {
            bad(
                &format!("trunk[{i}].options_interval_s"),
                "must be 1-3600".into(),
            );
        }
        for (key, v) in [
            ("options_down_after", t.options_down_after),
            ("options_up_after", t.options_up_after),
        ] {
            if v.is_some_and(|v| !(1..=100).contains(&v)) {
                bad(&format!("trunk[{i}].{key}"), "must be 1-100".into());
            }
        }
        if t.register && t.username.is_none() {
            bad(
                &format!("trunk[{i}].username"),
                "required with register = true".into(),
            );
        }
        if t.register_expires_s
            .is_some_and(|e| !(10..=86_400).contains(&e))
        {
            bad(
                &format!("trunk[{i}].register_expires_s"),
                "must be 10-86400".into(),
            );
        }
        if t.from_domain.as_deref().is_some_and(|d| {
            d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'>' && b != b'<')
        }) {
            bad(
                &format!("trunk[{i}].from_domain"),
                "must be a host name or address".into(),
            );
        }
        // Credentials come as a pair; half of them would silently disable authentication.
        match (&t.username, &t.password) {
            (Some(_), None) => bad(
                &format!("trunk[{i}].password"),
                "required with username".into(),
            ),
            (None, Some(_)) => bad(
                &format!("trunk[{i}].username"),
                "required with password".into(),
            ),
            _ => {}
        }
        for (key, v) in [
            ("username", t.username.as_deref()),
            ("auth_username", t.auth_username.as_deref()),
            ("realm", t.realm.as_deref()),
            ("password", t.password.as_ref().map(|p| p.0.as_str())),
        ] {
            if v.is_some_and(|v| v.is_empty() || v.chars().any(char::is_control)) {
                bad(
                    &format!("trunk[{i}].{key}"),
                    "must be non-empty without control characters".into(),
                );
            }
        }
        if let Some(l) = t.local {
            let listeners = match t.transport {
                Transport::Udp => &c.outside.udp,
                Transport::Tcp => &c.outside.tcp,
                Transport::Tls => &c.outside.tls,
            };
            if !listeners.contains(&l) {
                bad(
                    &format!("trunk[{i}].local"),
                    format!(
                        "{l} is not an [outside] {} listener",
                        match t.transport {
                            Transport::Udp => "udp",
                            Transport::Tcp => "tcp",
                            Transport::Tls => "tls",
                        }
                    ),
                );
            }
        }
        // Pass-through credentials are computed over the Request-URI the challenger sees: a
        // rewritten called number would make every relayed digest wrong.
        if t.auth == Some(super::TrunkAuthMode::Passthrough) {
            for (j, r) in t.numbers.iter().enumerate() {
                if r.number == super::NumberKind::Called {
                    bad(
                        &format!("trunk[{i}].number[{j}]"),
                        "called-number rules are refused with auth = \"passthrough\" (the \
                         digest covers the Request-URI; use auth = \"sbc\" to rewrite numbers)"
                            .into(),
                    );
                }
            }
        }
        // Names are checked when parsed; a literal must be an address one can send to.
        if t.proxy
            .static_addr()
            .is_some_and(|a| a.port() == 0 || a.ip().is_unspecified())
        {
            bad(
                &format!("trunk[{i}].proxy"),
                "must be a concrete address and port".into(),
            );
        }
    }

    if let Some(name) = &c.pbx.register_trunk
        && !c.trunks.iter().any(|t| &t.name == name)
    {
        bad(
            "pbx.register_trunk",
            format!("no [[trunk]] is named `{name}`"),
        );
    }
    if c.pbx
        .register_max_bindings
        .is_some_and(|n| !(1..=100_000).contains(&n))
    {
        bad("pbx.register_max_bindings", "must be 1-100000".into());
    }
    if !(1..=1_000_000).contains(&c.limits.max_pending_challenges) {
        bad("limits.max_pending_challenges", "must be 1-1000000".into());
    }
    if !(1..=86_400).contains(&c.dns.refresh_s) {
        bad("dns.refresh_s", "must be 1-86400".into());
    }
    if !(100..=30_000).contains(&c.dns.timeout_ms) {
        bad("dns.timeout_ms", "must be 100-30000".into());
    }
    for (i, s) in c.dns.servers.iter().enumerate() {
        if s.port() == 0 || s.ip().is_unspecified() {
            bad(
                &format!("dns.servers[{i}]"),
                "must be a concrete address and port".into(),
            );
        }
    }
    out.extend(c.cdr.problems());
    if let Some(s) = &c.state {
        out.extend(s.problems());
    }
    out.extend(super::compile(c).1);
    out.extend(super::trace::validate(&c.hep, &c.trace));
    let mut bad = |path: &str, msg: String| out.push((path.to_owned(), msg));

    if c.limits
        .max_calls
        .is_some_and(|v| !(1..=1_000_000).contains(&v))
    {
        bad("limits.max_calls", "must be 1-1000000".into());
    }
    if c.limits
        .max_cps
        .is_some_and(|v| !(1..=100_000).contains(&v))
    {
        bad("limits.max_cps", "must be 1-100000".into());
    }
    if !(100..=10_000_000).contains(&c.limits.max_transactions) {
        bad("limits.max_transactions", "must be 100-10000000".into());
    }
    if !(1..=65_536).contains(&c.limits.max_stored_mib) {
        bad("limits.max_stored_mib", "must be 1-65536".into());
    }
    if c.limits.retry_after_s > 86_400 {
        bad("limits.retry_after_s", "must be 0-86400".into());
    }
    // Beyond ten seconds every INVITE has been retransmitted several times (T1 = 500 ms):
    // a bound that high protects nothing.
    if c.limits.queue_delay_target_ms > 10_000 {
        bad("limits.queue_delay_target_ms", "must be 0-10000".into());
    }
    if c.limits.queue_delay_interval_ms > 10_000 {
        bad("limits.queue_delay_interval_ms", "must be 0-10000".into());
    }
    if c.limits.source_rate > 0 && !(1..=86_400).contains(&c.limits.ban_s) {
        bad("limits.ban_s", "must be 1-86400".into());
    }
    if !(1..=1_000_000).contains(&c.limits.max_bans) {
        bad("limits.max_bans", "must be 1-1000000".into());
    }
    for (key, value) in [
        ("limits.peer_rate", c.limits.peer_rate),
        ("limits.peer_burst", c.limits.peer_burst),
        ("limits.stateless_reply_rate", c.limits.stateless_reply_rate),
        (
            "limits.stateless_reply_burst",
            c.limits.stateless_reply_burst,
        ),
    ] {
        if value > 1_000_000 {
            bad(key, "must be 0-1000000".into());
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
    // Each signaling shard relays from its own part of the range (`media::share`): a shard
    // without a pair could not anchor any call's media.
    let shards = match c.general.signaling_shards {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => usize::from(n),
    };
    let pairs = usize::from(m.port_max.saturating_sub(m.port_min).saturating_add(1)) / 2;
    if m.port_max > m.port_min && pairs < shards {
        bad(
            "media.port_max",
            format!(
                "the range {}-{} has {pairs} port pairs; each of the {shards} signaling shards \
                 needs at least one",
                m.port_min, m.port_max
            ),
        );
    }
    if m.relatch_window_ms > 60_000 {
        bad(
            "media.relatch_window_ms",
            "must be at most 60000 (a long window lets any allowed source take a call's media)"
                .into(),
        );
    }
    if !(1..=64).contains(&m.max_streams) {
        bad("media.max_streams", "must be 1-64".into());
    }
    if !(1..=256).contains(&m.dtmf_queue) {
        bad("media.dtmf_queue", "must be 1-256".into());
    }
    // A SIP port inside the relay range on the media address: the relay would hand it to a
    // call, and with XDP the program drops UDP to relay ports no call holds — SIP included.
    for (name, side) in [("inside", &c.inside), ("outside", &c.outside)] {
        let relay = side.relay_addresses();
        for sip in &side.udp {
            let same_address =
                relay.iter().any(|(bind, _)| *bind == sip.ip()) || sip.ip().is_unspecified();
            if same_address && (m.port_min..=m.port_max).contains(&sip.port()) {
                bad(
                    "media.port_min",
                    format!(
                        "the relay port range {}-{} holds {name}.udp {sip} (SIP on the media \
                         address): move the range or the SIP port",
                        m.port_min, m.port_max
                    ),
                );
            }
        }
    }
    if m.relay_workers > MAX_RELAY_WORKERS {
        bad(
            "media.relay_workers",
            format!("must be 0 (one per core) to {MAX_RELAY_WORKERS}"),
        );
    }
    if m.warm_pairs > MAX_WARM_PAIRS {
        bad(
            "media.warm_pairs",
            format!("must be 0 (bind on the call's path) to {MAX_WARM_PAIRS}"),
        );
    }
    if m.relay_poll_us > 5_000 {
        // As for the AF_XDP relay: more added delay would be audible.
        bad(
            "media.relay_poll_us",
            "must be 0 (a wake-up per packet) to 5000".into(),
        );
    }
    if m.xsk_poll_us > 5_000 {
        // Longer than 5 ms of added delay per packet would be audible next to the jitter
        // buffers' own.
        bad(
            "media.xsk_poll_us",
            "must be 0 (a wake-up per packet) to 5000".into(),
        );
    }
    if !(1..=1024).contains(&m.xsk_busy_poll_budget) {
        bad(
            "media.xsk_busy_poll_budget",
            "must be 1 to 1024 (frames per NAPI poll)".into(),
        );
    }
    if m.xsk_busy_poll == XskBusyPoll::On && m.xsk_poll_us == 0 {
        // Busy polling leaves the NAPI context to the relay's polls; an event-driven relay
        // blocks in epoll instead of polling, so each packet would wait for the kernel's
        // gro_flush_timeout timer.
        bad(
            "media.xsk_busy_poll",
            "\"on\" needs media.xsk_poll_us > 0 (the relay polls the rings)".into(),
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
    for (key, token) in [
        ("admin.token", &c.admin.token),
        ("admin.read_token", &c.admin.read_token),
    ] {
        // Short or odd tokens are guessable or get mangled in an Authorization header.
        if let Some(t) = token
            && (t.len() < 16 || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            bad(
                key,
                "must be 16-256 printable ASCII characters without spaces".into(),
            );
        }
    }
    match (&c.admin.tls_cert, &c.admin.tls_key) {
        (Some(_), None) => bad("admin.tls_key", "needed with admin.tls_cert".into()),
        (None, Some(_)) => bad("admin.tls_cert", "needed with admin.tls_key".into()),
        _ => {}
    }
    for (i, name) in c.admin.hosts.iter().enumerate() {
        // Compared with the Host header's host part: a DNS name, not an address (addresses
        // always pass) and not a pattern.
        if name.ends_with('.') || super::proxy::valid_host(name).is_none() {
            bad(
                &format!("admin.hosts[{i}]"),
                "must be a DNS name (letters, digits, '-' and '.'; addresses are always accepted)"
                    .into(),
            );
        }
    }
    if c.admin.token.is_some() && c.admin.token == c.admin.read_token {
        bad("admin.read_token", "must differ from admin.token".into());
    }
    out
}

/// `[tls]` against the listeners and peers that use it.
/// `[pbx]` digest authentication: credentials as a pair, printable values, known algorithms.
fn pbx_auth(p: &super::Pbx, bad: &mut impl FnMut(&str, String)) {
    // Half a pair would silently leave the PBX unauthenticated.
    match (&p.username, &p.password) {
        (Some(_), None) => bad("pbx.password", "required with username".into()),
        (None, Some(_)) => bad("pbx.username", "required with password".into()),
        _ => {}
    }
    for (key, v) in [
        ("username", p.username.as_deref()),
        ("realm", p.realm.as_deref()),
        ("password", p.password.as_ref().map(|p| p.0.as_str())),
    ] {
        if v.is_some_and(|v| v.is_empty() || v.chars().any(char::is_control)) {
            bad(
                &format!("pbx.{key}"),
                "must be non-empty without control characters".into(),
            );
        }
    }
    if let Some(names) = &p.auth_algorithms {
        let mut seen = HashSet::new();
        let ok = !names.is_empty()
            && names.iter().all(|n| {
                ["SHA-256", "MD5"].iter().any(|k| k.eq_ignore_ascii_case(n))
                    && seen.insert(n.to_ascii_uppercase())
            });
        if !ok {
            bad(
                "pbx.auth_algorithms",
                "must list \"SHA-256\" and/or \"MD5\", each once".into(),
            );
        }
    }
}

fn tls(c: &Config, bad: &mut impl FnMut(&str, String)) {
    let t = &c.tls;
    let listeners = !c.inside.tls.is_empty() || !c.outside.tls.is_empty();
    if listeners && t.cert.is_none() {
        bad(
            "tls.cert",
            "required: inside.tls or outside.tls lists TLS listeners".into(),
        );
    }
    if t.cert.is_some() != t.key.is_some() {
        let (key, other) = if t.key.is_none() {
            ("tls.key", "cert")
        } else {
            ("tls.cert", "key")
        };
        bad(key, format!("required because tls.{other} is set"));
    }
    if t.reload_check_s > 86_400 {
        bad("tls.reload_check_s", "must be between 0 and 86400".into());
    }
    if t.require_client_cert && t.ca.is_none() {
        bad(
            "tls.ca",
            "required by require_client_cert (client certificates are verified against it)".into(),
        );
    }
    let outbound_tls = c.pbx.transport == Transport::Tls
        || c.trunks.iter().any(|tr| tr.transport == Transport::Tls);
    if outbound_tls && t.verify_server && t.ca.is_none() && !t.system_roots {
        bad(
            "tls.ca",
            "a peer uses TLS and verify_server is on, but no roots are trusted: set ca or \
             system_roots = true"
                .into(),
        );
    }
    for (i, tr) in c.trunks.iter().enumerate() {
        if let Some(name) = &tr.tls_server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            bad(
                &format!("trunk[{i}].tls_server_name"),
                format!("`{name}` is not a valid DNS name or IP address"),
            );
        }
    }
}

fn side(name: &str, s: &Side, bad: &mut impl FnMut(&str, String)) {
    if s.udp.is_empty() && s.tcp.is_empty() && s.tls.is_empty() {
        bad(
            &format!("{name}.udp"),
            "each side needs at least one udp, tcp or tls listener".into(),
        );
    }
    for (i, a) in s.tls.iter().enumerate() {
        if s.tcp.contains(a) {
            bad(
                &format!("{name}.tls[{i}]"),
                format!("{a} is also a tcp listener; TCP and TLS need different ports"),
            );
        }
    }
    for (proto, list) in [("udp", &s.udp), ("tcp", &s.tcp), ("tls", &s.tls)] {
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
    if let Some(a) = s.advertised_address
        && a.is_unspecified()
    {
        bad(
            &format!("{name}.advertised_address"),
            "must be a concrete address".into(),
        );
    }
    media_addresses(name, s, bad);
}

/// `media_address` / `media_addresses`: one of the two; distinct binds and distinct advertised
/// addresses (two relay addresses named alike in SDP would receive each other's media), one
/// address family per side (a stream's family is checked against the side's), and at most
/// [`MAX_MEDIA_ADDRESSES`].
fn media_addresses(name: &str, s: &Side, bad: &mut impl FnMut(&str, String)) {
    let key = if s.media_address.is_some() {
        format!("{name}.media_address")
    } else {
        format!("{name}.media_addresses")
    };
    match (s.media_address, s.media_addresses.is_empty()) {
        (None, true) => {
            bad(
                &key,
                "a side needs media_address or media_addresses (its relay addresses)".into(),
            );
            return;
        }
        (Some(_), false) => bad(
            &format!("{name}.media_addresses"),
            "set media_address or media_addresses, not both".into(),
        ),
        _ => {}
    }
    if s.media_addresses.len() > MAX_MEDIA_ADDRESSES {
        bad(
            &key,
            format!("at most {MAX_MEDIA_ADDRESSES} relay addresses per side"),
        );
    }
    let list = s.relay_addresses();
    let several = list.len() > 1;
    let at = |i: usize| {
        if s.media_address.is_some() {
            key.clone()
        } else {
            format!("{key}[{i}]")
        }
    };
    for (i, &(bind, advertised)) in list.iter().enumerate() {
        if bind.is_unspecified() && several {
            bad(
                &at(i),
                "an unspecified address would overlap the others' ports: list concrete ones".into(),
            );
        } else if bind.is_unspecified() && advertised == bind {
            bad(
                &at(i),
                "an unspecified address needs advertised_address for SDP".into(),
            );
        }
        if advertised.is_unspecified() && !bind.is_unspecified() {
            bad(&at(i), "the advertised address must be concrete".into());
        }
        if bind.is_ipv4() != list[0].0.is_ipv4() {
            bad(
                &at(i),
                format!(
                    "{bind} is not of the family of {} (one family per side)",
                    list[0].0
                ),
            );
        }
        if list[..i].iter().any(|(b, _)| *b == bind) {
            bad(&at(i), format!("{bind} is listed twice"));
        } else if list[..i].iter().any(|(_, a)| *a == advertised) {
            bad(
                &at(i),
                format!("{advertised} already names another relay address in SDP"),
            );
        }
    }
}
