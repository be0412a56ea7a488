//! Declarative header manipulation per trunk: add, set or remove a header on the INVITE that
//! starts a call, with the calling and called numbers available as `${calling}` / `${called}`.

use thiserror::Error;

/// What a header rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderAction {
    /// Add the header (after any copied ones of the same name).
    Add,
    /// Replace every copied header of that name with this one.
    Set,
    /// Remove every header of that name that would otherwise be copied.
    Remove,
}

/// A bad header rule, found when the configuration is compiled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The name is not a SIP token (RFC 3261 §25.1).
    #[error("{0:?} is not a valid header name")]
    BadName(String),
    /// The header carries the SBC's own routing or dialog state and cannot be changed.
    #[error(
        "header {0:?} is managed by the SBC (Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route, Max-Forwards, Content-*, authorization headers) and cannot be changed"
    )]
    Protected(String),
    /// The value contains CR, LF or another control character (header injection).
    #[error("the value contains a control character (CR, LF, ...)")]
    ControlCharacter,
    /// `${` without a closing `}`.
    #[error("unterminated ${{ in the value")]
    Unterminated,
    /// A `${name}` that is not one of the known variables.
    #[error("unknown variable ${{{0}}} (known: calling, called, trunk, domain)")]
    UnknownVariable(String),
    /// `add`/`set` without a value, or `remove` with one.
    #[error("{0}")]
    Value(&'static str),
}

/// Headers the SBC writes itself: changing them would break dialogs, routing or the
/// topology hiding. Compact forms included.
const PROTECTED: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "contact",
    "m",
    "route",
    "record-route",
    "max-forwards",
    "content-length",
    "l",
    "content-type",
    "c",
    "content-encoding",
    "e",
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "rack",
    "rseq",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Calling,
    Called,
    Trunk,
    Domain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A header value with `${variable}` references, checked when it is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

/// The values a [`Template`] is expanded with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The calling number (after normalisation).
    pub calling: &'a str,
    /// The called number (after normalisation).
    pub called: &'a str,
    /// The trunk's name.
    pub trunk: &'a str,
    /// The domain the SBC uses toward the trunk (its from_domain, else the proxy's host).
    pub domain: &'a str,
}

impl Template {
    /// Compiles `value`: literal text and `${calling}`, `${called}`, `${trunk}`, `${domain}`.
    pub fn parse(value: &str) -> Result<Self, RuleError> {
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(RuleError::ControlCharacter);
        }
        let mut pieces = Vec::new();
        let mut rest = value;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                pieces.push(Piece::Text(rest[..i].to_owned()));
            }
            let after = &rest[i + 2..];
            let end = after.find('}').ok_or(RuleError::Unterminated)?;
            let var = match &after[..end] {
                "calling" => Var::Calling,
                "called" => Var::Called,
                "trunk" => Var::Trunk,
                "domain" => Var::Domain,
                other => return Err(RuleError::UnknownVariable(other.to_owned())),
            };
            pieces.push(Piece::Var(var));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// The value with the variables filled in. Characters that could end the header line are
    /// dropped from the variables (numbers come from the peer's message).
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => {
                    let s = match v {
                        Var::Calling => vars.calling,
                        Var::Called => vars.called,
                        Var::Trunk => vars.trunk,
                        Var::Domain => vars.domain,
                    };
                    out.extend(s.chars().filter(|c| !c.is_control()));
                }
            }
        }
        out
    }

    /// Whether the template is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One header rule of a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// What to do.
    pub action: HeaderAction,
    /// Header name as written (for add/set), compared case-insensitively.
    pub name: String,
    /// Lower-case name, for matching copied headers.
    pub lname: String,
    /// Value (add/set).
    pub value: Template,
}

impl HeaderRule {
    /// Checks and compiles a rule.
    pub fn new(action: HeaderAction, name: &str, value: Option<&str>) -> Result<Self, RuleError> {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(RuleError::BadName(name.to_owned()));
        }
        let lname = name.to_ascii_lowercase();
        if PROTECTED.contains(&lname.as_str()) {
            return Err(RuleError::Protected(name.to_owned()));
        }
        let value = match (action, value) {
            (HeaderAction::Remove, None) => Template::default(),
            (HeaderAction::Remove, Some(_)) => {
                return Err(RuleError::Value("remove takes no value"));
            }
            (_, None) => return Err(RuleError::Value("add and set need a value")),
            (_, Some(v)) => Template::parse(v)?,
        };
        Ok(Self {
            action,
            name: name.to_owned(),
            lname,
            value,
        })
    }

    /// Whether copied headers named `lname` (lower case) are suppressed by this rule.
    pub fn suppresses(&self, lname: &str) -> bool {
        matches!(self.action, HeaderAction::Set | HeaderAction::Remove) && self.lname == lname
    }
}

/// RFC 3261 §25.1 `token` characters.
const fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: Vars<'static> = Vars {
        calling: "+4930111",
        called: "+4930222",
        trunk: "carrier-a",
        domain: "sip.example",
    };

    #[test]
    fn template_expands_variables() {
        let t =
            Template::parse("<sip:${calling}@${domain}>;x=${trunk}").expect("valid in the test");
        assert_eq!(t.render(&VARS), "<sip:+4930111@sip.example>;x=carrier-a");
        let t = Template::parse("${called}").expect("valid in the test");
        assert_eq!(t.render(&VARS), "+4930222");
        assert_eq!(
            Template::parse("plain $ {x}")
                .expect("valid in the test")
                .render(&VARS),
            "plain $ {x}"
        );
    }

    #[test]
    fn template_errors() {
        assert_eq!(Template::parse("a${calling"), Err(RuleError::Unterminated));
        assert_eq!(
            Template::parse("${nope}"),
            Err(RuleError::UnknownVariable("nope".into()))
        );
        assert_eq!(
            Template::parse("a\r\nVia: evil"),
            Err(RuleError::ControlCharacter)
        );
    }

    #[test]
    fn variables_cannot_inject_lines() {
        let t = Template::parse("${calling}").expect("valid in the test");
        let v = Vars {
            calling: "1\r\nVia: x",
            ..VARS
        };
        assert_eq!(t.render(&v), "1Via: x");
    }

    #[test]
    fn rules_are_checked() {
        assert!(HeaderRule::new(HeaderAction::Add, "X-Carrier", Some("${trunk}")).is_ok());
        assert!(matches!(
            HeaderRule::new(HeaderAction::Set, "Via", Some("x")),
            Err(RuleError::Protected(_))
        ));
        assert!(matches!(
            HeaderRule::new(HeaderAction::Remove, "call-id", None),
            Err(RuleError::Protected(_))
        ));
        assert!(matches!(
            HeaderRule::new(HeaderAction::Add, "X Bad", Some("1")),
            Err(RuleError::BadName(_))
        ));
        assert!(matches!(
            HeaderRule::new(HeaderAction::Add, "X-A", None),
            Err(RuleError::Value(_))
        ));
        assert!(matches!(
            HeaderRule::new(HeaderAction::Remove, "X-A", Some("1")),
            Err(RuleError::Value(_))
        ));
        let r = HeaderRule::new(HeaderAction::Set, "P-Asserted-Identity", Some("x"))
            .expect("valid in the test");
        assert!(r.suppresses("p-asserted-identity"));
        let r =
            HeaderRule::new(HeaderAction::Add, "Diversion", Some("x")).expect("valid in the test");
        assert!(!r.suppresses("diversion"));
    }
}
