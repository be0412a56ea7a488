//! Parse errors and the reaction each one calls for on the wire.
//!
//! A message that is not SIP at all is dropped silently. A malformed request is answered with
//! a specific status code and reason phrase, but only when the headers a response is built from
//! (Via, From, To, Call-ID, CSeq; RFC 3261 §8.2.6.2) could be extracted: the error then carries
//! those headers. A malformed response is never answered (RFC 3261 §18.1.2: it is discarded).

use super::headers::Headers;
use super::name::HeaderName;
use super::value_error::HeaderError;

/// What the transport layer should do about a message that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Send a response with this status code and reason phrase.
    Respond {
        /// The status code.
        code: u16,
        /// A reason phrase naming the problem.
        reason: &'static str,
    },
    /// Discard the message without answering (count it and rate-limit any log).
    Drop,
}

/// A message that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes do not start with a SIP request or status line.
    #[error("not a SIP message")]
    NotSip,
    /// The message is malformed and cannot be answered: it is a response, or the headers a
    /// response needs are missing or unusable.
    #[error("unanswerable malformed message: {problem}")]
    Unanswerable {
        /// What is wrong.
        problem: Problem,
    },
    /// A request is malformed, and the headers needed to answer it were extracted.
    #[error("malformed request: {problem}")]
    Rejected {
        /// What is wrong.
        problem: Problem,
        /// The request's headers, to build the error response from.
        headers: Box<Headers>,
    },
}

impl ParseError {
    /// The reaction the peer gets.
    pub fn reaction(&self) -> Reaction {
        match self {
            Self::NotSip | Self::Unanswerable { .. } => Reaction::Drop,
            Self::Rejected { problem, .. } => {
                let (code, reason) = problem.status();
                Reaction::Respond { code, reason }
            }
        }
    }

    /// The problem, unless the input was not SIP.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::NotSip => None,
            Self::Unanswerable { problem } | Self::Rejected { problem, .. } => Some(problem),
        }
    }
}

/// What is wrong with a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The message is larger than [`Limits::max_message`](super::Limits::max_message).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More header fields than [`Limits::max_headers`](super::Limits::max_headers).
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A header field (with its folded lines) or the start line is longer than
    /// [`Limits::max_header_len`](super::Limits::max_header_len).
    #[error("a header line is longer than {max} bytes")]
    HeaderTooLong {
        /// The limit.
        max: usize,
    },
    /// More Via values than [`Limits::max_vias`](super::Limits::max_vias).
    #[error("more than {max} Via values")]
    TooManyVias {
        /// The limit.
        max: usize,
    },
    /// The start line or a header is not UTF-8 (RFC 3261 §7.3.1 TEXT-UTF8).
    #[error("invalid UTF-8 at byte {offset}")]
    NotUtf8 {
        /// Offset of the first invalid byte in the buffer.
        offset: usize,
    },
    /// The header section does not end with an empty line.
    #[error("the header section is not terminated by an empty line")]
    Truncated,
    /// The Request-Line does not follow `Method SP Request-URI SP SIP-Version CRLF`.
    #[error("malformed Request-Line")]
    BadRequestLine,
    /// The Request-URI is malformed (also `<>` around it, RFC 4475 §3.1.2.7).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// The Request-URI of a SIP/SIPS URI has a headers component (RFC 3261 §19.1.1 table).
    #[error("Request-URI has a headers component")]
    RequestUriHeaders,
    /// The Request-URI scheme is not sip, sips or tel.
    #[error("unsupported Request-URI scheme")]
    UnsupportedScheme,
    /// The SIP version is not 2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The Status-Line is malformed (including codes outside 100–699).
    #[error("malformed Status-Line")]
    BadStatusLine,
    /// A header line has no valid name or colon.
    #[error("malformed header line at byte {offset}")]
    BadHeaderLine {
        /// Offset of the line in the buffer.
        offset: usize,
    },
    /// A mandatory header is missing.
    #[error("missing {0} header")]
    Missing(HeaderName),
    /// A header that must occur once occurs more than once (RFC 4475 §3.3.8, §3.3.9).
    #[error("more than one {0} header")]
    Duplicate(HeaderName),
    /// A header the parser checks is malformed.
    #[error("malformed {name} header: {error}")]
    Invalid {
        /// Which header.
        name: HeaderName,
        /// What is wrong with it.
        error: HeaderError,
    },
    /// The CSeq method differs from the request method (RFC 4475 §3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Content-Length declares more bytes than the message carries.
    #[error("body of {available} bytes is shorter than Content-Length {declared}")]
    BodyTooShort {
        /// The declared length.
        declared: u32,
        /// The bytes present after the header section.
        available: usize,
    },
}

impl Problem {
    /// The status code and reason phrase for a request with this problem.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::TooLarge { .. } | Self::TooManyHeaders { .. } | Self::HeaderTooLong { .. } => {
                (513, "Message Too Large")
            }
            Self::TooManyVias { .. } => (400, "Too Many Via Headers"),
            Self::NotUtf8 { .. } => (400, "Invalid UTF-8 in Header"),
            Self::Truncated => (400, "Incomplete Header Section"),
            Self::BadRequestLine => (400, "Malformed Request-Line"),
            Self::BadRequestUri => (400, "Malformed Request-URI"),
            Self::RequestUriHeaders => (400, "Headers Not Allowed in Request-URI"),
            Self::UnsupportedScheme => (416, "Unsupported URI Scheme"),
            Self::BadVersion => (505, "Version Not Supported"),
            Self::BadStatusLine => (400, "Malformed Status-Line"),
            Self::BadHeaderLine { .. } => (400, "Malformed Header Line"),
            Self::Missing(name) => (400, missing_reason(*name)),
            Self::Duplicate(name) => (400, duplicate_reason(*name)),
            Self::Invalid { name, .. } => (400, invalid_reason(*name)),
            Self::CSeqMethodMismatch => (400, "CSeq Method Does Not Match"),
            Self::BodyTooShort { .. } => (400, "Body Shorter Than Content-Length"),
        }
    }
}

fn missing_reason(name: HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Missing Via Header",
        HeaderName::From => "Missing From Header",
        HeaderName::To => "Missing To Header",
        HeaderName::CallId => "Missing Call-ID Header",
        HeaderName::CSeq => "Missing CSeq Header",
        HeaderName::MaxForwards => "Missing Max-Forwards Header",
        HeaderName::ContentLength => "Missing Content-Length Header",
        _ => "Missing Mandatory Header",
    }
}

fn duplicate_reason(name: HeaderName) -> &'static str {
    match name {
        HeaderName::From => "Multiple From Headers",
        HeaderName::To => "Multiple To Headers",
        HeaderName::CallId => "Multiple Call-ID Headers",
        HeaderName::CSeq => "Multiple CSeq Headers",
        HeaderName::MaxForwards => "Multiple Max-Forwards Headers",
        HeaderName::ContentLength => "Multiple Content-Length Headers",
        _ => "Header Must Occur Once",
    }
}

fn invalid_reason(name: HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Malformed Via Header",
        HeaderName::From => "Malformed From Header",
        HeaderName::To => "Malformed To Header",
        HeaderName::CallId => "Malformed Call-ID Header",
        HeaderName::CSeq => "Malformed CSeq Header",
        HeaderName::MaxForwards => "Malformed Max-Forwards Header",
        HeaderName::ContentLength => "Malformed Content-Length Header",
        HeaderName::Contact => "Malformed Contact Header",
        HeaderName::Route => "Malformed Route Header",
        HeaderName::RecordRoute => "Malformed Record-Route Header",
        _ => "Malformed Header",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_maps_to_one_status() {
        let cases = [
            (Problem::BadVersion, 505),
            (Problem::UnsupportedScheme, 416),
            (
                Problem::TooLarge {
                    len: 70_000,
                    max: 65_535,
                },
                513,
            ),
            (Problem::Missing(HeaderName::CallId), 400),
            (Problem::CSeqMethodMismatch, 400),
        ];
        for (problem, code) in cases {
            assert_eq!(problem.status().0, code, "{problem}");
        }
        assert_eq!(
            Problem::Duplicate(HeaderName::CSeq).status().1,
            "Multiple CSeq Headers"
        );
        assert_eq!(ParseError::NotSip.reaction(), Reaction::Drop);
        let unanswerable = ParseError::Unanswerable {
            problem: Problem::Truncated,
        };
        assert_eq!(unanswerable.reaction(), Reaction::Drop);
    }
}
