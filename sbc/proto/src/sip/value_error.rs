//! Why a header value or a URI could not be decoded: the errors of the value parsers (`scan`,
//! `params`, `uri`, the typed headers), below the message-level [`ParseError`] that carries
//! them.
//!
//! [`ParseError`]: super::ParseError

/// Why a header value (or its part) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The header is absent.
    #[error("header absent")]
    Absent,
    /// The value is empty where the grammar needs something.
    #[error("empty value")]
    Empty,
    /// A specific character was expected.
    #[error("expected '{0}'")]
    Expected(char),
    /// A token was expected.
    #[error("expected a token")]
    ExpectedToken,
    /// A quoted string is not terminated.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A backslash escape is invalid.
    #[error("invalid escape")]
    BadEscape,
    /// The display name is neither a quoted string nor tokens followed by `<`.
    #[error("invalid display name")]
    BadDisplayName,
    /// A number is malformed.
    #[error("invalid number")]
    BadNumber,
    /// A number is out of range.
    #[error("number out of range")]
    NumberOverflow,
    /// A parameter is malformed (e.g. `;;`).
    #[error("invalid parameter")]
    BadParam,
    /// The word/`@` structure of a Call-ID is malformed.
    #[error("invalid Call-ID")]
    BadCallId,
    /// A URI inside the header is malformed.
    #[error("invalid URI: {0}")]
    Uri(#[from] UriError),
    /// Unexpected text after the value.
    #[error("unexpected trailing text")]
    Trailing,
    /// The value is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
}

/// Why a URI could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("missing or invalid scheme")]
    BadScheme,
    /// The user part has characters outside the grammar.
    #[error("invalid user part")]
    BadUser,
    /// The password has characters outside the grammar.
    #[error("invalid password")]
    BadPassword,
    /// The host is missing or malformed.
    #[error("invalid host")]
    BadHost,
    /// The port is not a number in 0–65535.
    #[error("invalid port")]
    BadPort,
    /// A `;param` is malformed.
    #[error("invalid URI parameter")]
    BadParam,
    /// The `?headers` component is malformed.
    #[error("invalid URI headers")]
    BadHeaders,
    /// A tel URI number is malformed (RFC 3966 §3).
    #[error("invalid telephone number")]
    BadNumber,
    /// The URI is empty or has characters no URI may have (e.g. whitespace).
    #[error("invalid characters in URI")]
    BadChar,
}
