//! Turning TOML text into a [`Config`], reporting every problem with its key path and line.
//!
//! Sections are deserialized one at a time so that a type error in `[media]` does not hide
//! another one in `[pbx]`; semantic checks run once every section has a type. Line numbers come
//! from the spans of toml's own parse tree, looked up by the key path of each problem.

use std::{fmt, path::Path};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{Admin, Config, General, Limits, Log, Media, Sip, Tls, validate};

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

    const SECTIONS: [&str; 11] = [
        "general", "log", "sip", "inside", "outside", "tls", "pbx", "trunk", "media", "admin",
        "limits",
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
    let media = take::<Media>(&table, "media", false, &locate, &mut problems);
    let admin = take::<Admin>(&table, "admin", false, &locate, &mut problems);
    let limits = take::<Limits>(&table, "limits", false, &locate, &mut problems);
    let (
        Ok(general),
        Ok(log),
        Ok(sip),
        Ok(Some(inside)),
        Ok(Some(outside)),
        Ok(tls),
        Ok(Some(pbx)),
        Ok(trunks),
        Ok(media),
        Ok(admin),
        Ok(limits),
    ) = (
        general, log, sip, inside, outside, tls, pbx, trunks, media, admin, limits,
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
        media: media.unwrap_or_default(),
        admin: admin.unwrap_or_default(),
        limits: limits.unwrap_or_default(),
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
            config.trunks[0].proxy,
            "127.0.0.1:5090".parse().expect("literal")
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
    fn path_round_trip() {
        let segs = parse_path("trunk[1].proxy");
        assert_eq!(render_path(&segs), "trunk[1].proxy");
    }
}
