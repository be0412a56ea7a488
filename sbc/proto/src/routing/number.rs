//! Number matching and normalisation (strip/add prefix, regular-expression rewrite).
//!
//! E.164 ↔ national conversions are ordered prefix rules, first match wins, e.g. toward a
//! carrier that wants E.164 from a German PBX: `00` → strip 2, add `+`; then `0` → strip 1,
//! add `+49`. The reverse for inbound calls: `+49` → strip 3, add `0`; then `+` → strip 1,
//! add `00`.

use std::borrow::Cow;

use regex::Regex;

/// Which numbers a rule or route applies to.
#[derive(Debug, Clone, Default)]
pub enum NumberMatch {
    /// Every number.
    #[default]
    Any,
    /// Numbers starting with this string (compared byte for byte, `+` included).
    Prefix(String),
    /// Numbers the regular expression matches (anchor it with `^…$` for a whole-number match).
    Regex(Regex),
}

impl NumberMatch {
    /// Whether `number` is selected.
    pub fn matches(&self, number: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(p) => number.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(number),
        }
    }

    /// A short description for logs and the admin API (`any`, `prefix:+49`, `regex:^1\d+$`).
    pub fn describe(&self) -> String {
        match self {
            Self::Any => "any".to_owned(),
            Self::Prefix(p) => format!("prefix:{p}"),
            Self::Regex(r) => format!("regex:{}", r.as_str()),
        }
    }
}

impl PartialEq for NumberMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, Self::Any) => true,
            (Self::Prefix(a), Self::Prefix(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for NumberMatch {}

/// One normalisation rule: if `matcher` selects the number, rewrite it with `replace` (regex
/// matchers only: the matched part is replaced, `$1`… refer to groups), then remove `strip`
/// leading characters, then put `add` in front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberRule {
    /// Which numbers the rule rewrites.
    pub matcher: NumberMatch,
    /// Regular-expression replacement (with a regex matcher).
    pub replace: Option<String>,
    /// Leading characters removed.
    pub strip: usize,
    /// Prefix added.
    pub add: String,
}

impl NumberRule {
    /// The rewritten number, or None when the rule does not select `number`.
    pub fn apply(&self, number: &str) -> Option<String> {
        if !self.matcher.matches(number) {
            return None;
        }
        let replaced: Cow<'_, str> = match (&self.matcher, &self.replace) {
            (NumberMatch::Regex(r), Some(rep)) => r.replace(number, rep.as_str()),
            _ => Cow::Borrowed(number),
        };
        let start = replaced
            .char_indices()
            .nth(self.strip)
            .map_or(replaced.len(), |(i, _)| i);
        let mut out = String::with_capacity(self.add.len() + replaced.len() - start);
        out.push_str(&self.add);
        out.push_str(&replaced[start..]);
        Some(out)
    }
}

/// Applies the first rule of `rules` that selects `number`; the number unchanged when none
/// does. Parameters after the user part's first `;` (RFC 3966 style, e.g. `;npdi`) are kept.
pub fn normalize<'a>(rules: &[NumberRule], number: &'a str) -> Cow<'a, str> {
    if rules.is_empty() {
        return Cow::Borrowed(number);
    }
    let (digits, params) = number
        .find(';')
        .map_or((number, ""), |i| number.split_at(i));
    match rules.iter().find_map(|r| r.apply(digits)) {
        Some(mut n) => {
            n.push_str(params);
            Cow::Owned(n)
        }
        None => Cow::Borrowed(number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str, strip: usize, add: &str) -> NumberRule {
        NumberRule {
            matcher: NumberMatch::Prefix(p.into()),
            replace: None,
            strip,
            add: add.into(),
        }
    }

    #[test]
    fn national_to_e164_and_back() {
        let to_e164 = [prefix("00", 2, "+"), prefix("0", 1, "+49")];
        assert_eq!(normalize(&to_e164, "0301234567"), "+49301234567");
        assert_eq!(normalize(&to_e164, "0044207946"), "+44207946");
        assert_eq!(normalize(&to_e164, "110"), "110");
        assert_eq!(normalize(&to_e164, "+4930"), "+4930");
        let to_national = [prefix("+49", 3, "0"), prefix("+", 1, "00")];
        assert_eq!(normalize(&to_national, "+49301234567"), "0301234567");
        assert_eq!(normalize(&to_national, "+44207946"), "0044207946");
    }

    #[test]
    fn regex_replace_then_strip_and_add() {
        let r = NumberRule {
            matcher: NumberMatch::Regex(Regex::new(r"^9(\d+)$").expect("valid in the test")),
            replace: Some("$1".into()),
            strip: 0,
            add: "+1".into(),
        };
        assert_eq!(r.apply("95551234").as_deref(), Some("+15551234"));
        assert_eq!(r.apply("5551234"), None);
        assert_eq!(r.apply("9x"), None);
    }

    #[test]
    fn strip_beyond_the_end_and_multibyte_input_do_not_panic() {
        let r = prefix("", 10, "x");
        assert_eq!(r.apply("123").as_deref(), Some("x"));
        let r = prefix("é", 1, "");
        assert_eq!(r.apply("éa").as_deref(), Some("a"));
    }

    #[test]
    fn user_parameters_survive() {
        let rules = [prefix("0", 1, "+49")];
        assert_eq!(normalize(&rules, "030123;npdi"), "+4930123;npdi");
        assert!(matches!(normalize(&[], "030"), Cow::Borrowed(_)));
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = [prefix("0", 1, "A"), prefix("0", 1, "B")];
        assert_eq!(normalize(&rules, "01"), "A1");
    }
}
