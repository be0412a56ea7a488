//! Turning TOML text into a [`Config`], reporting every problem with its key path and line.
//!
//! Sections are deserialized one at a time so that a type error in `[media]` does not hide
//! another one in `[pbx]`; semantic checks run once every section has a type. Line numbers come
//! from the spans of toml's own parse tree, looked up by the key path of each problem.

use std::{fmt, path::Path};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{Admin, Config, Dns, General, Hep, Limits, Log, Media, Sip, Tls, Trace, validate};

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Dotted key path, e.g. `media.port_min` or `trunk[0].proxy`; empty for syntax errors.
    pub path: String,
    /// 1-based line in the file, when it could be located.
    pub line: Option<usize>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.path.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: {}: {}", self.path, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{path}: {} problem(s):\n{}", problems.len(), render(problems))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates a configuration file; returns the config and the text it came from.
pub fn load_file(path: &Path) -> Result<(Config, String), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    match parse(&text) {
        Ok(config) => Ok((config, text)),
        Err(problems) => Err(LoadError::Invalid {
            path: path.display().to_string(),
            problems,
        }),
    }
}

/// Parses and validates configuration text, collecting every problem found.
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let (tree, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax
            .iter()
            .map(|e| Problem {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_owned(),
            })
            .collect());
    }
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![Problem {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_owned(),
            }]);
        }
    };
    let locate = |path: &[Seg]| locate(text, tree.get_ref(), path);
    let mut problems = Vec::new();

    const SECTIONS: [&str; 18] = [
        "general", "log", "sip", "inside", "outside", "tls", "pbx", "trunk", "route", "inbound",
        "media", "admin", "limits", "dns", "hep", "trace", "cdr", "state",
    ];
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let path = [Seg::Key(key.clone())];
            problems.push(Problem {
                path: key.clone(),
                line: locate(&path),
                message: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            });
        }
    }

    let general = take::<General>(&table, "general", false, &locate, &mut problems);
    let log = take::<Log>(&table, "log", false, &locate, &mut problems);
    let sip = take::<Sip>(&table, "sip", false, &locate, &mut problems);
    let inside = take(&table, "inside", true, &locate, &mut problems);
    let outside = take(&table, "outside", true, &locate, &mut problems);
    let tls = take::<Tls>(&table, "tls", false, &locate, &mut problems);
    let pbx = take(&table, "pbx", true, &locate, &mut problems);
    let trunks = take(&table, "trunk", false, &locate, &mut problems);
    let routes = take(&table, "route", false, &locate, &mut problems);
    let inbound = take(&table, "inbound", false, &locate, &mut problems);
    let media = take::<Media>(&table, "media", false, &locate, &mut problems);
    let admin = take::<Admin>(&table, "admin", false, &locate, &mut problems);
    let limits = take::<Limits>(&table, "limits", false, &locate, &mut problems);
    let dns = take::<Dns>(&table, "dns", false, &locate, &mut problems);
    let hep = take::<Hep>(&table, "hep", false, &locate, &mut problems);
    let trace = take::<Trace>(&table, "trace", false, &locate, &mut problems);
    let cdr = take::<super::Cdr>(&table, "cdr", false, &locate, &mut problems);
    let state = take::<super::State>(&table, "state", false, &locate, &mut problems);
    let (
        Ok(general),
        Ok(log),
        Ok(sip),
        Ok(Some(inside)),
        Ok(Some(outside)),
        Ok(tls),
        Ok(Some(pbx)),
        Ok(trunks),
        Ok(routes),
        Ok(inbound),
        Ok(media),
        Ok(admin),
        Ok(limits),
        Ok(dns),
        Ok(hep),
        Ok(trace),
        Ok(cdr),
        Ok(state),
    ) = (
        general, log, sip, inside, outside, tls, pbx, trunks, routes, inbound, media, admin,
        limits, dns, hep, trace, cdr, state,
    )
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let config = Config {
        general: general.unwrap_or_default(),
        log: log.unwrap_or_default(),
        sip: sip.unwrap_or_default(),
        inside,
        outside,
        tls: tls.unwrap_or_default(),
        pbx,
        trunks: trunks.unwrap_or_default(),
        routes: routes.unwrap_or_default(),
        inbound: inbound.unwrap_or_default(),
        media: media.unwrap_or_default(),
        admin: admin.unwrap_or_default(),
        limits: limits.unwrap_or_default(),
        dns: dns.unwrap_or_default(),
        hep: hep.unwrap_or_default(),
        trace: trace.unwrap_or_default(),
        cdr: cdr.unwrap_or_default(),
        state,
    };
    let semantic = validate::validate(&config);
    if semantic.is_empty() {
        return Ok(config);
    }
    Err(semantic
        .into_iter()
        .map(|(path, message)| {
            let segs = parse_path(&path);
            Problem {
                line: locate(&segs),
                path,
                message,
            }
        })
        .collect())
}

/// Deserializes one top-level section. `Ok(None)`: absent and optional. `Err`: a problem was
/// recorded (missing required section, or the first type error inside it, with its path).
fn take<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    required: bool,
    locate: &dyn Fn(&[Seg]) -> Option<usize>,
    problems: &mut Vec<Problem>,
) -> Result<Option<T>, ()> {
    let Some(value) = table.get(name) else {
        if required {
            problems.push(Problem {
                path: name.to_owned(),
                line: None,
                message: format!("missing required section [{name}]"),
            });
            return Err(());
        }
        return Ok(None);
    };
    match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(v) => Ok(Some(v)),
        Err(err) => {
            let mut segs = vec![Seg::Key(name.to_owned())];
            for seg in err.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => {}
                }
            }
            // toml appends "in `key`" on following lines; the path already says where.
            let message = err
                .inner()
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            // Point at an unknown field itself, whether or not the path already ends with it.
            if message.starts_with("unknown field `")
                && let Some(field) = message.split('`').nth(1)
                && segs.last() != Some(&Seg::Key(field.to_owned()))
            {
                segs.push(Seg::Key(field.to_owned()));
            }
            problems.push(Problem {
                path: render_path(&segs),
                line: locate(&segs),
                message,
            });
            Err(())
        }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses `a.b[2].c` back into segments (the form `validate` reports paths in).
fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            segs.push(Seg::Key(rest[..open].to_owned()));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    segs.push(Seg::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            segs.push(Seg::Key(rest.to_owned()));
        }
    }
    segs
}

/// Line of the deepest element of `path` that exists in the parse tree.
fn locate(text: &str, root: &DeTable<'_>, path: &[Seg]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut cur = root.get(k.as_str())?;
    let mut span = cur.span();
    for seg in rest {
        let next = match (seg, cur.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => t.get(k.as_str()),
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(n) => {
                cur = n;
                span = cur.span();
            }
            None => break,
        }
    }
    Some(line_of(text, span.start))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_needed_cover_every_relay_port_and_connection() {
        let mut config = parse(super::super::SHIPPED_DEFAULT).unwrap_or_else(|p| panic!("{p:?}"));
        config.media.port_min = 10_000;
        config.media.port_max = 19_999;
        config.sip.max_connections = 500;
        let addresses =
            (config.inside.relay_addresses().len() + config.outside.relay_addresses().len()) as u64;
        assert_eq!(
            config.descriptors_needed(),
            10_000 * addresses + 500 + 1_024
        );
    }

    #[test]
    fn shipped_default_is_valid() {
        let config = parse(super::super::SHIPPED_DEFAULT).unwrap_or_else(|p| panic!("{p:?}"));
        // The documented interface: tests and users rely on these addresses.
        assert_eq!(
            config.inside.udp,
            vec!["127.0.0.1:5060".parse().expect("literal")]
        );
        assert_eq!(
            config.inside.tcp,
            vec!["127.0.0.1:5060".parse().expect("literal")]
        );
        assert_eq!(
            config.outside.udp,
            vec!["127.0.0.1:5080".parse().expect("literal")]
        );
        assert_eq!(
            config.trunks[0].proxy.static_addr(),
            Some("127.0.0.1:5090".parse().expect("literal"))
        );
        assert_eq!(
            config.pbx.address,
            "127.0.0.1:5070".parse().expect("literal")
        );
        assert_eq!(
            config.pbx.allow,
            vec!["127.0.0.0/8".parse().expect("literal")]
        );
        assert_eq!(
            (config.media.port_min, config.media.port_max),
            (10_000, 20_000)
        );
        assert_eq!(
            config.admin.listen,
            "127.0.0.1:8080".parse().expect("literal")
        );
    }

    const MINIMAL: &str = r#"
[inside]
udp = ["127.0.0.1:5060"]
media_address = "127.0.0.1"

[outside]
udp = ["127.0.0.1:5080"]
media_address = "127.0.0.1"

[pbx]
address = "127.0.0.1:5070"
allow = ["127.0.0.0/8"]

[[trunk]]
name = "carrier"
proxy = "127.0.0.1:5090"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(c.sip.t1_ms, 500);
        assert_eq!(c.media.port_min, 10_000);
        assert_eq!(c.admin.listen.port(), 8080);
    }

    #[test]
    fn state_section_is_optional_and_checked_with_key_paths() {
        assert_eq!(
            parse(MINIMAL).expect("minimal").state,
            None,
            "absent: no persistence"
        );
        let ok =
            format!("{MINIMAL}\n[state]\nredis = \"redis://127.0.0.1:6390/2\"\nnode = \"sbc-a\"\n");
        let c = parse(&ok).unwrap_or_else(|p| panic!("{p:?}"));
        let st = c.state.expect("[state]");
        assert_eq!(
            (st.node.as_str(), st.ttl_s, st.queue),
            ("sbc-a", 300, 10_000)
        );
        let bad = format!(
            "{MINIMAL}\n[state]\nredis = \"http://x\"\nnode = \"a b\"\nttl_s = 5\nqueue = 0\n"
        );
        let problems = parse(&bad).expect_err("bad values");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["state.redis", "state.node", "state.ttl_s", "state.queue"]
        );
        assert!(problems.iter().all(|p| p.line.is_some()), "{problems:?}");
        let own = format!(
            "{MINIMAL}\n[state]\nredis = \"redis://127.0.0.1/0\"\nnode = \"a\"\npeer = \"a\"\n"
        );
        let problems = parse(&own).expect_err("a node is not its own peer");
        assert_eq!(problems[0].path, "state.peer", "{problems:?}");
        let missing = format!("{MINIMAL}\n[state]\nnode = \"a\"\n");
        let problems = parse(&missing).expect_err("redis required");
        assert_eq!(problems[0].path, "state", "{problems:?}");
    }

    #[test]
    fn syntax_error_has_line() {
        let text = "[inside]\nudp = [\"127.0.0.1:5060\"\nmedia_address = 1\n";
        let p = parse(text).expect_err("invalid TOML");
        assert!(p[0].line.is_some(), "{p:?}");
    }

    #[test]
    fn reports_every_type_error_with_path_and_line() {
        let text = MINIMAL
            .replace("udp = [\"127.0.0.1:5080\"]", "udp = [\"not-an-address\"]")
            .replace(
                "allow = [\"127.0.0.0/8\"]",
                "allow = [\"127.0.0.0/8\"]\nbogus = 1",
            );
        let problems = parse(&text).expect_err("two errors");
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(problems[0].path, "outside.udp[0]");
        assert_eq!(problems[0].line, Some(7));
        assert_eq!(problems[1].path, "pbx.bogus");
        assert_eq!(problems[1].line, Some(13));
    }

    #[test]
    fn semantic_errors_have_lines() {
        let text = format!("{MINIMAL}\n[media]\nport_min = 10001\nport_max = 9000\n");
        let problems = parse(&text).expect_err("bad range");
        let paths: Vec<_> = problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert!(
            paths.contains(&("media.port_min", Some(19))),
            "{problems:#?}"
        );
        assert!(
            paths.contains(&("media.port_max", Some(20))),
            "{problems:#?}"
        );
    }

    #[test]
    fn relay_range_must_not_hold_a_sip_port_on_the_media_address() {
        // 5080 is the outside SIP port on 127.0.0.1, the outside media address.
        let text = format!("{MINIMAL}\n[media]\nport_min = 5000\nport_max = 6000\n");
        let problems = parse(&text).expect_err("SIP port in the relay range");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"media.port_min"), "{problems:#?}");
        assert!(
            problems.iter().any(|p| p.message.contains("outside.udp")),
            "{problems:#?}"
        );
        parse(&format!(
            "{MINIMAL}\n[media]\nport_min = 6000\nport_max = 7000\n"
        ))
        .expect("a range clear of SIP");
    }

    #[test]
    fn every_signaling_shard_needs_a_port_pair_of_its_own() {
        // 6000-6007: four pairs.
        let with = |shards: u16| {
            format!(
                "[general]\nsignaling_shards = {shards}\n{MINIMAL}\n[media]\nport_min = 6000\nport_max = 6007\n"
            )
        };
        parse(&with(4)).expect("a pair each");
        let problems = parse(&with(5)).expect_err("a shard without a pair");
        assert!(
            problems
                .iter()
                .any(|p| p.path == "media.port_max" && p.message.contains("5 signaling shards")),
            "{problems:#?}"
        );
    }

    /// `MINIMAL` with the outside side's media line replaced by `media`.
    fn with_outside_media(media: &str) -> String {
        MINIMAL.replacen(
            "udp = [\"127.0.0.1:5080\"]\nmedia_address = \"127.0.0.1\"",
            &format!("udp = [\"127.0.0.1:5080\"]\n{media}"),
            1,
        )
    }

    #[test]
    fn several_media_addresses_per_side_load_with_their_advertised_addresses() {
        let text = with_outside_media(
            "advertised_address = \"203.0.113.1\"\n\
             media_addresses = [\"127.0.0.2\", \
             { address = \"127.0.0.3\", advertised = \"203.0.113.3\" }, \"127.0.0.4\"]",
        );
        let c = parse(&text).unwrap_or_else(|p| panic!("{p:#?}"));
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("literal");
        assert_eq!(
            c.outside.relay_addresses(),
            [
                // The side's advertised address names the first relay address, as it does
                // `media_address`.
                (ip("127.0.0.2"), ip("203.0.113.1")),
                (ip("127.0.0.3"), ip("203.0.113.3")),
                (ip("127.0.0.4"), ip("127.0.0.4")),
            ]
        );
        let relay = crate::media::MediaSettings::from_config(&c).relay;
        assert_eq!(relay.outside.iter().count(), 3);
        assert_eq!(relay.inside.first().bind, ip("127.0.0.1"));
        // Four relay addresses (127.0.0.1 inside, three outside), each with the whole range.
        assert_eq!(relay.bind_addresses().len(), 4);
        // The single form still loads, as the first and only relay address.
        let one = parse(MINIMAL).expect("minimal");
        assert_eq!(
            one.inside.relay_addresses(),
            [(ip("127.0.0.1"), ip("127.0.0.1"))]
        );
    }

    #[test]
    fn media_address_lists_are_validated_with_paths() {
        let list = |entries: &str| with_outside_media(&format!("media_addresses = [{entries}]"));
        for (text, path, want) in [
            (
                with_outside_media(""),
                "outside.media_addresses",
                "needs media_address",
            ),
            (
                with_outside_media(
                    "media_address = \"127.0.0.1\"\nmedia_addresses = [\"127.0.0.2\"]",
                ),
                "outside.media_addresses",
                "not both",
            ),
            (
                list("\"127.0.0.2\", \"127.0.0.2\""),
                "outside.media_addresses[1]",
                "listed twice",
            ),
            (
                list("\"127.0.0.2\", { address = \"127.0.0.3\", advertised = \"127.0.0.2\" }"),
                "outside.media_addresses[1]",
                "already names another",
            ),
            (
                list("\"127.0.0.2\", \"::1\""),
                "outside.media_addresses[1]",
                "one family per side",
            ),
            (
                list("\"127.0.0.2\", \"0.0.0.0\""),
                "outside.media_addresses[1]",
                "overlap",
            ),
            (
                list(
                    &(2..=10)
                        .map(|i| format!("\"127.0.0.{i}\""))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                "outside.media_addresses",
                "at most 8",
            ),
        ] {
            let problems = parse(&text).expect_err(&text);
            assert!(
                problems
                    .iter()
                    .any(|p| p.path == path && p.message.contains(want) && p.line.is_some()),
                "{text}\n{problems:#?}"
            );
        }
        // A SIP port in the relay range is caught on every relay address, not just the first.
        let text = format!(
            "{}\n[media]\nport_min = 5000\nport_max = 6000\n",
            MINIMAL.replacen(
                "udp = [\"127.0.0.1:5080\"]\nmedia_address = \"127.0.0.1\"",
                "udp = [\"127.0.0.9:5080\"]\nmedia_addresses = [\"127.0.0.8\", \"127.0.0.9\"]",
                1,
            )
        );
        let problems = parse(&text).expect_err("SIP port in the second address's range");
        assert!(
            problems.iter().any(|p| p.message.contains("outside.udp")),
            "{problems:#?}"
        );
        // A bad entry is a type error with its path.
        let problems = parse(&list("\"127.0.0.2\", \"nonsense\"")).expect_err("bad entry");
        assert!(
            problems
                .iter()
                .any(|p| p.path.starts_with("outside") && p.message.contains("invalid IP")),
            "{problems:#?}"
        );
    }

    #[test]
    fn dtmf_queue_is_read_and_bounded() {
        let ok = parse(&format!("{MINIMAL}\n[media]\ndtmf_queue = 3\n")).expect("valid");
        assert_eq!(ok.media.dtmf_queue, 3);
        for bad in ["0", "257"] {
            let text = format!("{MINIMAL}\n[media]\ndtmf_queue = {bad}\n");
            let problems = parse(&text).expect_err("out of range");
            let paths: Vec<_> = problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
            assert_eq!(paths, [("media.dtmf_queue", Some(19))], "{problems:#?}");
        }
    }

    #[test]
    fn a_peer_budget_below_the_call_rate_is_warned_about() {
        let ok = parse(MINIMAL).expect("valid");
        assert_eq!(ok.limits.peer_budget_warning(), None, "the defaults fit");
        let fast = parse(&format!("{MINIMAL}\n[limits]\nmax_cps = 1000\n")).expect("valid");
        let w = fast.limits.peer_budget_warning().expect("warned");
        assert!(
            w.contains("limits.peer_rate = 2000") && w.contains("3000/s"),
            "{w}"
        );
        let off = parse(&format!(
            "{MINIMAL}\n[limits]\nmax_cps = 1000\npeer_rate = 0\n"
        ))
        .expect("valid");
        assert_eq!(
            off.limits.peer_budget_warning(),
            None,
            "no limit, no warning"
        );
    }

    #[test]
    fn relay_workers_are_read_and_bounded() {
        assert_eq!(parse(MINIMAL).expect("valid").media.relay_workers, 0);
        let ok = parse(&format!("{MINIMAL}\n[media]\nrelay_workers = 3\n")).expect("valid");
        assert_eq!(ok.media.relay_workers, 3);
        let text = format!("{MINIMAL}\n[media]\nrelay_workers = 257\n");
        let problems = parse(&text).expect_err("out of range");
        let paths: Vec<_> = problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(paths, [("media.relay_workers", Some(19))], "{problems:#?}");
    }

    #[test]
    fn relay_poll_interval_is_read_and_bounded() {
        assert_eq!(parse(MINIMAL).expect("valid").media.relay_poll_us, 1_000);
        let ok = parse(&format!("{MINIMAL}\n[media]\nrelay_poll_us = 250\n")).expect("valid");
        assert_eq!(ok.media.relay_poll_us, 250);
        let text = format!("{MINIMAL}\n[media]\nrelay_poll_us = 5001\n");
        let problems = parse(&text).expect_err("out of range");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["media.relay_poll_us"], "{problems:#?}");
    }

    #[test]
    fn warm_pairs_are_read_and_bounded() {
        assert_eq!(parse(MINIMAL).expect("valid").media.warm_pairs, 8);
        let ok = parse(&format!("{MINIMAL}\n[media]\nwarm_pairs = 0\n")).expect("valid");
        assert_eq!(ok.media.warm_pairs, 0);
        let text = format!("{MINIMAL}\n[media]\nwarm_pairs = 1025\n");
        let problems = parse(&text).expect_err("out of range");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["media.warm_pairs"], "{problems:#?}");
    }

    #[test]
    fn xsk_switch_and_poll_interval_are_read_and_bounded() {
        let default = parse(MINIMAL).expect("valid").media;
        assert_eq!(
            (default.xsk, default.xsk_poll_us),
            (crate::config::XskMode::Auto, 1_000)
        );
        let off = parse(&format!(
            "{MINIMAL}\n[media]\nxsk = \"off\"\nxsk_poll_us = 250\n"
        ))
        .expect("valid");
        assert_eq!(
            (off.media.xsk, off.media.xsk_poll_us),
            (crate::config::XskMode::Off, 250)
        );
        let text = format!("{MINIMAL}\n[media]\nxsk_poll_us = 5001\n");
        let problems = parse(&text).expect_err("out of range");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["media.xsk_poll_us"], "{problems:#?}");
        assert!(parse(&format!("{MINIMAL}\n[media]\nxsk = \"on\"\n")).is_err());
    }

    #[test]
    fn xsk_busy_poll_is_off_by_default_and_needs_polling() {
        use crate::config::XskBusyPoll;
        let default = parse(MINIMAL).expect("valid").media;
        assert_eq!(
            (default.xsk_busy_poll, default.xsk_busy_poll_budget),
            (XskBusyPoll::Off, 64)
        );
        let on = parse(&format!(
            "{MINIMAL}\n[media]\nxsk_busy_poll = \"on\"\nxsk_busy_poll_budget = 128\n"
        ))
        .expect("valid");
        assert_eq!(
            (on.media.xsk_busy_poll, on.media.xsk_busy_poll_budget),
            (XskBusyPoll::On, 128)
        );
        for (text, path) in [
            (
                "xsk_busy_poll = \"on\"\nxsk_poll_us = 0\n",
                "media.xsk_busy_poll",
            ),
            ("xsk_busy_poll_budget = 0\n", "media.xsk_busy_poll_budget"),
            (
                "xsk_busy_poll_budget = 1025\n",
                "media.xsk_busy_poll_budget",
            ),
        ] {
            let problems = parse(&format!("{MINIMAL}\n[media]\n{text}")).expect_err(text);
            let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(paths, [path], "{problems:#?}");
        }
        assert!(parse(&format!("{MINIMAL}\n[media]\nxsk_busy_poll = \"yes\"\n")).is_err());
    }

    #[test]
    fn missing_and_unknown_sections() {
        let problems = parse("[bogus]\nx = 1\n").expect_err("empty");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["bogus", "inside", "outside", "pbx"],
            "{problems:#?}"
        );
        assert_eq!(problems[0].line, Some(1));
    }

    #[test]
    fn session_timer_and_redirect_keys_are_validated() {
        let c = parse(MINIMAL).unwrap_or_else(|p| panic!("{p:?}"));
        assert!(c.sip.session_timer);
        assert_eq!((c.sip.session_expires, c.sip.min_se), (1800, 90));
        assert_eq!(c.sip.max_redirects, 5);
        assert_eq!(c.trunks[0].redirect, super::super::RedirectMode::Recurse);
        let text = MINIMAL.replace(
            "[inside]",
            "[sip]\nmin_se = 60\nsession_expires = 30\nmax_redirects = 0\n\n[inside]",
        );
        let problems = parse(&text).expect_err("out of range");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["sip.min_se", "sip.session_expires", "sip.max_redirects"],
            "{problems:#?}"
        );
        let text = format!("{MINIMAL}redirect = \"relay\"\nhide_redirect_contacts = true\n");
        let c = parse(&text).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(c.trunks[0].redirect, super::super::RedirectMode::Relay);
        assert!(c.trunks[0].hide_redirect_contacts);
        let text = format!("{MINIMAL}redirect = \"bounce\"\n");
        let problems = parse(&text).expect_err("unknown mode");
        assert_eq!(problems[0].path, "trunk[0].redirect", "{problems:#?}");
    }

    #[test]
    fn pbx_auth_keys_are_validated() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "allow = [\"127.0.0.0/8\"]",
                &format!("allow = [\"127.0.0.0/8\"]\n{extra}"),
            )
        };
        let ok = parse(&with(
            "username = \"pbx\"\npassword = \"pw\"\nauth_algorithms = [\"MD5\"]",
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(ok.pbx.algorithms(), [sbc_proto::auth::Algorithm::Md5]);
        for (extra, path) in [
            ("username = \"pbx\"", "pbx.password"),
            ("password = \"pw\"", "pbx.username"),
            (
                "username = \"pbx\"\npassword = \"pw\"\nrealm = \"\"",
                "pbx.realm",
            ),
            (
                "username = \"pbx\"\npassword = \"pw\"\nauth_algorithms = [\"SHA-512\"]",
                "pbx.auth_algorithms",
            ),
            (
                "username = \"pbx\"\npassword = \"pw\"\nauth_algorithms = [\"MD5\", \"md5\"]",
                "pbx.auth_algorithms",
            ),
            (
                "username = \"pbx\"\npassword = \"pw\"\nauth_algorithms = []",
                "pbx.auth_algorithms",
            ),
        ] {
            let problems = parse(&with(extra)).expect_err(extra);
            assert!(
                problems.iter().any(|p| p.path == path && p.line.is_some()),
                "{extra}: {problems:#?}"
            );
        }
    }

    #[test]
    fn codec_and_t38_keys_are_translated_and_validated_with_paths() {
        let with = |pbx: &str, trunk: &str| {
            MINIMAL
                .replace(
                    "allow = [\"127.0.0.0/8\"]",
                    &format!("allow = [\"127.0.0.0/8\"]\n{pbx}"),
                )
                .replace(
                    "proxy = \"127.0.0.1:5090\"",
                    &format!("proxy = \"127.0.0.1:5090\"\n{trunk}"),
                )
        };
        let ok = parse(&with(
            "codecs_deny = [\"G729\"]\ndtmf = \"info\"",
            "codecs = [\"PCMA\", \"PCMU\", \"telephone-event\"]\nt38 = \"reject\"\ndtmf = \"inband-passthrough\"\ntelephone_event_pt = 96",
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        let pbx = ok.pbx.media_policy();
        assert_eq!(pbx.codecs.deny, ["G729"]);
        assert_eq!(pbx.t38, sbc_proto::b2bua::T38Mode::Passthrough);
        assert_eq!(pbx.dtmf, sbc_proto::b2bua::DtmfMode::Info);
        let t = ok.trunks[0].media_policy();
        assert_eq!(t.codecs.allow, ["PCMA", "PCMU", "telephone-event"]);
        assert_eq!(t.t38, sbc_proto::b2bua::T38Mode::Reject);
        assert_eq!(t.dtmf, sbc_proto::b2bua::DtmfMode::InbandPassthrough);
        assert_eq!(t.event_payload_type, Some(96));
        assert_eq!(pbx.event_payload_type, None);
        for (pbx, trunk, path) in [
            ("telephone_event_pt = 8", "", "pbx.telephone_event_pt"),
            (
                "",
                "telephone_event_pt = 128",
                "trunk[0].telephone_event_pt",
            ),
            ("t38 = \"maybe\"", "", "pbx.t38"),
            ("", "dtmf = \"2833\"", "trunk[0].dtmf"),
            ("", "codecs = [\"PCMA\", \"pcma\"]", "trunk[0].codecs"),
            ("", "codecs = [\"PC MA\"]", "trunk[0].codecs"),
            ("codecs = [\"telephone-event\"]", "", "pbx.codecs"),
            (
                "",
                "codecs = [\"PCMA\"]\ncodecs_deny = [\"G722\"]",
                "trunk[0].codecs_deny",
            ),
        ] {
            let problems = parse(&with(pbx, trunk)).expect_err(path);
            assert!(
                problems.iter().any(|p| p.path == path),
                "{pbx} {trunk}: {problems:#?}"
            );
        }
    }

    #[test]
    fn srtp_keys_are_validated_with_paths() {
        let with = |pbx: &str, trunk: &str| {
            MINIMAL
                .replace(
                    "allow = [\"127.0.0.0/8\"]",
                    &format!("allow = [\"127.0.0.0/8\"]\n{pbx}"),
                )
                .replace(
                    "proxy = \"127.0.0.1:5090\"",
                    &format!("proxy = \"127.0.0.1:5090\"\n{trunk}"),
                )
        };
        let ok = parse(&with(
            "srtp = \"optional\"",
            "srtp = \"mandatory\"\nsrtp_suites = [\"AES_CM_128_HMAC_SHA1_32\"]",
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        use sbc_proto::srtp::{SrtpMode, Suite};
        assert_eq!(ok.pbx.srtp_policy().mode, SrtpMode::Optional);
        assert_eq!(ok.pbx.srtp_policy().suites, Suite::ALL.to_vec());
        let t = ok.trunks[0].srtp_policy();
        assert_eq!(
            (t.mode, t.suites),
            (SrtpMode::Mandatory, vec![Suite::AesCm128HmacSha1_32])
        );
        for (pbx, trunk, path) in [
            ("srtp = \"always\"", "", "pbx.srtp"),
            (
                "",
                "srtp_suites = [\"AES_256_CM_HMAC_SHA1_80\"]",
                "trunk[0].srtp_suites",
            ),
            (
                "srtp = \"mandatory\"\nsrtp_suites = []",
                "",
                "pbx.srtp_suites",
            ),
            (
                "",
                "srtp_suites = [\"AEAD_AES_128_GCM\", \"AEAD_AES_128_GCM\"]",
                "trunk[0].srtp_suites",
            ),
        ] {
            let problems = parse(&with(pbx, trunk)).expect_err(path);
            assert!(
                problems.iter().any(|p| p.path == path),
                "{pbx} {trunk}: {problems:#?}"
            );
        }
    }

    #[test]
    fn limits_and_caps_are_validated_with_paths() {
        for (section, path) in [
            ("[limits]\nmax_transactions = 10", "limits.max_transactions"),
            ("[limits]\nmax_stored_mib = 0", "limits.max_stored_mib"),
            ("[limits]\nmax_calls = 0", "limits.max_calls"),
            ("[limits]\nmax_cps = 0", "limits.max_cps"),
        ] {
            let problems = parse(&format!("{MINIMAL}\n{section}\n")).expect_err(section);
            assert!(
                problems.iter().any(|p| p.path == path && p.line.is_some()),
                "{section}: {problems:#?}"
            );
        }
        let text = MINIMAL.replace(
            "proxy = \"127.0.0.1:5090\"",
            "proxy = \"127.0.0.1:5090\"\nmax_cps = 0",
        );
        let problems = parse(&text).expect_err("trunk max_cps 0");
        assert!(
            problems.iter().any(|p| p.path == "trunk[0].max_cps"),
            "{problems:#?}"
        );
        let ok = parse(&format!(
            "{MINIMAL}\n[limits]\nmax_transactions = 500\nmax_stored_mib = 8\n"
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            (ok.limits.max_transactions, ok.limits.max_stored_mib),
            (500, 8)
        );
    }

    /// `section` added to the minimal configuration is refused with a problem at `path`,
    /// located on its line.
    fn assert_refused_at(section: &str, path: &str) {
        let problems = parse(&format!("{MINIMAL}\n{section}\n")).expect_err(section);
        assert!(
            problems.iter().any(|p| p.path == path && p.line.is_some()),
            "{section}: {problems:#?}"
        );
    }

    #[test]
    fn drain_keys_are_validated_with_paths() {
        for (section, path) in [
            (
                "[general]\ndrain_timeout_s = 3601",
                "general.drain_timeout_s",
            ),
            (
                "[general]\ndrain_retry_after_s = 86401",
                "general.drain_retry_after_s",
            ),
            (
                "[general]\nsignaling_shards = 65",
                "general.signaling_shards",
            ),
            // 64 * T1 (500 ms) = 32 s is the longest a BYE can wait for its answer.
            (
                "[general]\ndrain_bye_wait_ms = 32001",
                "general.drain_bye_wait_ms",
            ),
        ] {
            assert_refused_at(section, path);
        }
        let ok = parse(&format!(
            "{MINIMAL}\n[general]\ndrain_timeout_s = 5\ndrain_retry_after_s = 9\n\
             drain_bye_wait_ms = 32000\n"
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        let d = crate::config::drain_config(&ok);
        assert_eq!(
            (d.timeout.as_secs(), d.retry_after_s, d.bye_wait.as_millis()),
            (5, 9, 32_000)
        );
    }

    #[test]
    fn overload_keys_are_validated_and_reach_the_core() {
        for (section, path) in [
            (
                "[limits]\nqueue_delay_target_ms = 10001",
                "limits.queue_delay_target_ms",
            ),
            (
                "[limits]\nqueue_delay_interval_ms = 10001",
                "limits.queue_delay_interval_ms",
            ),
        ] {
            assert_refused_at(section, path);
        }
        let default =
            crate::config::sbc_config(&parse(MINIMAL).unwrap_or_else(|p| panic!("{p:?}")));
        assert_eq!(
            default.overload,
            sbc_proto::overload::OverloadConfig::default()
        );
        let off = parse(&format!(
            "{MINIMAL}\n[limits]\nqueue_delay_target_ms = 0\nqueue_delay_interval_ms = 250\n"
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        let o = crate::config::sbc_config(&off).overload;
        assert_eq!((o.target.as_millis(), o.interval.as_millis()), (0, 250));
    }

    /// systemd kills what outlasts TimeoutStopSec: the shipped unit must leave the default
    /// drain (timeout, BYE wait, 2 s of de-registration) time to finish.
    #[test]
    fn the_systemd_unit_waits_longer_than_the_default_drain() {
        let unit = include_str!("../../../packaging/sbc.service");
        let stop: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim().parse().ok())
            .expect("TimeoutStopSec in seconds");
        let c = parse(super::super::SHIPPED_DEFAULT).unwrap_or_else(|p| panic!("{p:?}"));
        let drain = crate::config::drain_config(&c);
        let needed = drain.timeout + drain.bye_wait + std::time::Duration::from_secs(2 + 5);
        assert!(
            std::time::Duration::from_secs(stop) > needed,
            "TimeoutStopSec={stop} must exceed {needed:?}"
        );
    }

    #[test]
    fn transport_keys_are_validated_with_paths() {
        let text = MINIMAL
            .replace(
                "udp = [\"127.0.0.1:5060\"]",
                "udp = [\"127.0.0.1:5060\"]\ntcp = [\"127.0.0.1:5061\"]\ntls = [\"127.0.0.1:5061\"]",
            )
            .replace(
                "proxy = \"127.0.0.1:5090\"",
                "proxy = \"127.0.0.1:5090\"\ntransport = \"tls\"\ntls_server_name = \"bad name\"",
            )
            + "\n[sip]\nidle_timeout_s = 0\nudp_workers = 100\n";
        let problems = parse(&text).expect_err("invalid");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "sip.idle_timeout_s",
            "sip.udp_workers",
            "inside.tls[0]",
            "tls.cert",
            "trunk[0].tls_server_name",
        ] {
            assert!(paths.contains(&want), "{want} missing from {problems:#?}");
        }
        // Every problem has a line, except a key of the absent [tls] section.
        assert!(
            problems
                .iter()
                .all(|p| p.line.is_some() || p.path == "tls.cert"),
            "{problems:#?}"
        );
    }

    /// `MINIMAL`'s trunk with `extra` keys, and the digest mode it resolves to.
    fn trunk_auth_with(extra: &str) -> (sbc_proto::b2bua::TrunkAuth, Option<String>) {
        let text = MINIMAL.replace(
            "proxy = \"127.0.0.1:5090\"",
            &format!("proxy = \"127.0.0.1:5090\"\n{extra}"),
        );
        let c = parse(&text).unwrap_or_else(|p| panic!("{p:?}"));
        (c.trunks[0].auth_mode(), c.trunks[0].auth_warning())
    }

    const CALLED_RULE: &str = "[[trunk.number]]\nnumber = \"called\"\nadd = \"+\"";

    #[test]
    fn absent_auth_resolves_from_credentials_and_number_rules() {
        use sbc_proto::b2bua::TrunkAuth::{Passthrough, Sbc};
        // No credentials: the PBX answers the carrier's challenges (no 403 for want of them).
        assert_eq!(trunk_auth_with(""), (Passthrough, None));
        // Calling-number rules leave the Request-URI alone.
        assert_eq!(
            trunk_auth_with("[[trunk.number]]\nnumber = \"calling\"\nadd = \"+\""),
            (Passthrough, None)
        );
        // Credentials: the SBC answers.
        assert_eq!(
            trunk_auth_with("username = \"u\"\npassword = \"p\""),
            (Sbc, None)
        );
        assert_eq!(
            trunk_auth_with(&format!(
                "username = \"u\"\npassword = \"p\"\n{CALLED_RULE}"
            )),
            (Sbc, None)
        );
        // A rewritten called number makes pass-through impossible: sbc, with a warning.
        let (mode, warning) = trunk_auth_with(CALLED_RULE);
        assert_eq!(mode, Sbc);
        let warning = warning.expect("a warning for the 403s to come");
        assert!(
            warning.contains("carrier") && warning.contains("would not verify"),
            "{warning}"
        );
    }

    #[test]
    fn explicit_auth_is_kept_and_round_trips() {
        use sbc_proto::b2bua::TrunkAuth::{Passthrough, Sbc};
        assert_eq!(trunk_auth_with("auth = \"sbc\""), (Sbc, None));
        assert_eq!(
            trunk_auth_with(&format!("auth = \"sbc\"\n{CALLED_RULE}")),
            (Sbc, None)
        );
        assert_eq!(
            trunk_auth_with("auth = \"passthrough\"\nusername = \"u\"\npassword = \"p\""),
            (Passthrough, None)
        );
        // An absent `auth` stays absent when the configuration is written back.
        let c = parse(MINIMAL).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(c.trunks[0].auth, None);
        let text = toml::to_string(&c).expect("serializable");
        assert!(!text.contains("auth"), "{text}");
        assert_eq!(parse(&text).expect("parse back"), c);
    }

    #[test]
    fn passthrough_refuses_called_number_rules_and_register_keys_are_checked() {
        let text = MINIMAL
            .replace(
                "proxy = \"127.0.0.1:5090\"",
                "proxy = \"127.0.0.1:5090\"\nauth = \"passthrough\"\n\
             [[trunk.number]]\nnumber = \"calling\"\nadd = \"+\"\n\
             [[trunk.number]]\nnumber = \"called\"\nadd = \"+\"",
            )
            .replace(
                "allow = [\"127.0.0.0/8\"]",
                "allow = [\"127.0.0.0/8\"]\nregister = \"relay\"\nregister_trunk = \"nope\"",
            );
        let problems = parse(&text).expect_err("invalid");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["trunk[0].number[1]", "pbx.register_trunk"],
            "{problems:#?}"
        );
        assert!(problems[0].message.contains("passthrough"), "{problems:#?}");
        // Calling-number rules and a known trunk are fine; the modes reach the B2BUA.
        let ok = MINIMAL
            .replace(
                "proxy = \"127.0.0.1:5090\"",
                "proxy = \"127.0.0.1:5090\"\nauth = \"passthrough\"",
            )
            .replace(
                "allow = [\"127.0.0.0/8\"]",
                "allow = [\"127.0.0.0/8\"]\nregister = \"relay\"\nregister_trunk = \"carrier\"",
            );
        let c = parse(&ok).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            c.trunks[0].auth_mode(),
            sbc_proto::b2bua::TrunkAuth::Passthrough
        );
        assert_eq!(
            c.pbx.register_policy(&c.trunks),
            sbc_proto::b2bua::RegisterPolicy::Relay {
                trunk: 0,
                max_bindings: 100
            }
        );
    }

    #[test]
    fn tls_section_parses() {
        let text = format!(
            "{MINIMAL}\n[tls]\ncert = \"/etc/sbc/c.pem\"\nkey = \"/etc/sbc/k.pem\"\n\
             verify_server = false\nreload_check_s = 0\n"
        )
        .replace("udp = [\"127.0.0.1:5080\"]", "tls = [\"127.0.0.1:5081\"]");
        let c = parse(&text).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(c.outside.tls.len(), 1);
        assert!(!c.tls.verify_server);
        let t = crate::transport::TransportConfig::from(&c);
        let tls = t.tls.expect("TLS settings");
        assert_eq!(tls.reload_check, None);
        assert_eq!(t.outside.tls, c.outside.tls);
    }

    #[test]
    fn proxy_names_and_dns_section() {
        let text = MINIMAL.replace("proxy = \"127.0.0.1:5090\"", "proxy = \"sip.carrier.test\"")
            + "\n[dns]\nservers = [\"127.0.0.1:5353\"]\nrefresh_s = 5\n";
        let c = parse(&text).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            c.trunks[0].proxy,
            crate::config::ProxyAddr::Host("sip.carrier.test".into())
        );
        assert_eq!(
            c.dns.servers,
            vec!["127.0.0.1:5353".parse().expect("literal")]
        );
        assert_eq!((c.dns.refresh_s, c.dns.timeout_ms), (5, 2_000));
        // The serialised form stays the string that was written.
        let back = toml::to_string(&c).expect("serialise");
        assert!(back.contains("proxy = \"sip.carrier.test\""), "{back}");
    }

    #[test]
    fn bad_proxy_and_dns_keys_are_reported_with_paths() {
        let text = MINIMAL.replace("proxy = \"127.0.0.1:5090\"", "proxy = \"bad name:5060\"");
        let problems = parse(&text).expect_err("bad proxy");
        assert_eq!(problems[0].path, "trunk[0].proxy", "{problems:#?}");
        assert_eq!(problems[0].line, Some(16), "{problems:#?}");
        assert!(
            problems[0].message.contains("not a valid host name"),
            "{problems:#?}"
        );
        let text = MINIMAL.replace("proxy = \"127.0.0.1:5090\"", "proxy = \"127.0.0.1\"");
        let problems = parse(&text).expect_err("no port");
        assert!(
            problems[0].message.contains("needs a port"),
            "{problems:#?}"
        );
        let text = format!("{MINIMAL}\n[dns]\nrefresh_s = 0\ntimeout_ms = 5\n");
        let problems = parse(&text).expect_err("bad dns");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["dns.refresh_s", "dns.timeout_ms"], "{problems:#?}");
    }

    #[test]
    fn path_round_trip() {
        let segs = parse_path("trunk[1].proxy");
        assert_eq!(render_path(&segs), "trunk[1].proxy");
    }
}

#[cfg(test)]
mod routing_tests {
    use super::parse;

    const BASE: &str = r#"
[inside]
udp = ["127.0.0.1:5060"]
media_address = "127.0.0.1"

[outside]
udp = ["127.0.0.1:5080"]
media_address = "127.0.0.1"

[pbx]
address = "127.0.0.1:5070"
allow = ["127.0.0.0/8"]

[[trunk]]
name = "a"
proxy = "127.0.0.1:5090"

[[trunk.number]]
number = "called"
prefix = "0"
strip = 1
add = "+49"

[[trunk.number]]
direction = "inbound"
number = "calling"
match = "^\\+49(\\d+)$"
replace = "0$1"

[[trunk.header]]
action = "add"
name = "X-Account"
value = "${calling}"

[[trunk]]
name = "b"
proxy = "127.0.0.2:5090"
"#;

    #[test]
    fn routing_sections_parse_and_compile() {
        let text = format!(
            "{BASE}\n[[route]]\nname = \"intl\"\nprefix = \"00\"\ntrunks = [\"b\", \"a\"]\n\
             weights = [1, 2]\n\n[[inbound]]\nname = \"sales\"\nmatch = \"^0301\"\n\
             target = \"127.0.0.1:5072\"\n"
        );
        let c = parse(&text).unwrap_or_else(|p| panic!("{p:#?}"));
        let (compiled, problems) = crate::config::compile(&c);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(compiled.routes[0].trunks, [1, 0]);
        let (out_a, in_a) = &compiled.trunks[0];
        assert_eq!(sbc_proto::routing::normalize(&out_a.called, "030"), "+4930");
        assert_eq!(
            sbc_proto::routing::normalize(&in_a.calling, "+49301"),
            "0301"
        );
        assert_eq!(out_a.headers.len(), 1);
        assert_eq!(compiled.inbound[0].target.addr.port(), 5072);
        // The routes survive a round trip through the admin API's TOML serialisation.
        let again = toml::to_string(&c).expect("serialises");
        assert_eq!(parse(&again).expect("reparses"), c);
    }

    #[test]
    fn bad_routing_entries_are_reported_with_their_key_paths() {
        let text = BASE
            .replace("prefix = \"0\"", "prefix = \"0\"\nmatch = \"^0\"")
            .replace("^\\\\+49(\\\\d+)$", "^(unclosed")
            .replace("name = \"X-Account\"", "name = \"Via\"")
            + "\n[[route]]\nname = \"r\"\ntrunks = [\"a\", \"nope\"]\nweights = [1]\n\
               \n[[inbound]]\nname = \"i\"\ntarget = \"192.0.2.1:5060\"\n";
        let problems = parse(&text).expect_err("invalid");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "trunk[0].number[0].match",
            "trunk[0].number[1].match",
            "trunk[0].header[0].name",
            "route[0].trunks",
            "route[0].weights",
            "inbound[0].target",
        ] {
            assert!(paths.contains(&want), "{want} missing: {problems:#?}");
        }
        assert!(
            problems.iter().all(|p| p.line.is_some()),
            "every problem has a line: {problems:#?}"
        );
    }
}
