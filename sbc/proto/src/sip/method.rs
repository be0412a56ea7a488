//! Request methods (RFC 3261 §7.1, §27.4). Method names are case-sensitive tokens; unknown ones
//! are kept verbatim so that they can be relayed or answered with 405/501.

use std::fmt;

use super::scan;

/// A SIP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `ACK` (RFC 3261)
    Ack,
    /// `BYE` (RFC 3261)
    Bye,
    /// `CANCEL` (RFC 3261)
    Cancel,
    /// `INFO` (RFC 6086)
    Info,
    /// `INVITE` (RFC 3261)
    Invite,
    /// `MESSAGE` (RFC 3428)
    Message,
    /// `NOTIFY` (RFC 6665)
    Notify,
    /// `OPTIONS` (RFC 3261)
    Options,
    /// `PRACK` (RFC 3262)
    Prack,
    /// `PUBLISH` (RFC 3903)
    Publish,
    /// `REFER` (RFC 3515)
    Refer,
    /// `REGISTER` (RFC 3261)
    Register,
    /// `SUBSCRIBE` (RFC 6665)
    Subscribe,
    /// `UPDATE` (RFC 3311)
    Update,
    /// Any other token, kept as received.
    Extension(Box<str>),
}

impl Method {
    /// Parses a method token. Returns `None` if `s` is not a token.
    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s {
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "INFO" => Self::Info,
            "INVITE" => Self::Invite,
            "MESSAGE" => Self::Message,
            "NOTIFY" => Self::Notify,
            "OPTIONS" => Self::Options,
            "PRACK" => Self::Prack,
            "PUBLISH" => Self::Publish,
            "REFER" => Self::Refer,
            "REGISTER" => Self::Register,
            "SUBSCRIBE" => Self::Subscribe,
            "UPDATE" => Self::Update,
            other if scan::is_token(other) => Self::Extension(other.into()),
            _ => return None,
        })
    }

    /// The method name as on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Info => "INFO",
            Self::Invite => "INVITE",
            Self::Message => "MESSAGE",
            Self::Notify => "NOTIFY",
            Self::Options => "OPTIONS",
            Self::Prack => "PRACK",
            Self::Publish => "PUBLISH",
            Self::Refer => "REFER",
            Self::Register => "REGISTER",
            Self::Subscribe => "SUBSCRIBE",
            Self::Update => "UPDATE",
            Self::Extension(s) => s,
        }
    }

    /// Whether this method compares equal to a method token as received (case-sensitive).
    pub fn is(&self, token: &str) -> bool {
        self.as_str() == token
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extension_and_invalid() {
        assert_eq!(Method::from_token("INVITE"), Some(Method::Invite));
        // Case-sensitive: `invite` is an extension method, not INVITE (RFC 3261 §7.1).
        assert_eq!(
            Method::from_token("invite"),
            Some(Method::Extension("invite".into()))
        );
        let weird = "!interesting-Method0123456789_*+`.%indeed'~";
        assert_eq!(
            Method::from_token(weird).map(|m| m.to_string()),
            Some(weird.to_owned())
        );
        assert_eq!(Method::from_token("IN VITE"), None);
        assert_eq!(Method::from_token(""), None);
        assert!(Method::Bye.is("BYE"));
    }
}
