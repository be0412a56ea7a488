//! The answers the B2BUA gives by itself, as one vocabulary: each [`Refusal`] knows its status
//! code and reason phrase (the way a TLS error knows its alert), so no call site spells a code
//! or a phrase and the two cannot disagree.
//!
//! Answers relayed from the other leg keep the peer's status (with the standard phrase, see
//! `uas.rs`); only what the SBC decides itself is a `Refusal`.

use crate::{media::MediaError, sip::StatusCode};

/// A final answer the SBC gives on its own to a request it will not (or can no longer) carry.
/// Variants in status-code order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A request the SBC cannot act on as sent (a REGISTER without an AOR).
    BadRequest,
    /// Digest credentials of the PBX that are malformed (RFC 3261 §22.4).
    MalformedCredentials,
    /// A trunk refused our credentials, or the PBX is locked out after failed attempts.
    Forbidden,
    /// No called number, or no route takes it.
    NotFound,
    /// A method the SBC does not relay (RFC 3261 §21.4.6; sent with Allow).
    MethodNotAllowed,
    /// An INVITE whose `Accept` excludes SDP: no answer the SBC relays could be read by the
    /// caller (RFC 3261 §21.4.7; RFC 4475's `sdp01`).
    NotAcceptable,
    /// The PBX must authenticate (sent with a challenge, `pbx_auth.rs`).
    ProxyAuthenticationRequired,
    /// No answer from the other leg in time (Timer B, C or F).
    RequestTimeout,
    /// A body of a type the SBC does not relay (RFC 3261 §21.4.13; sent with Accept).
    UnsupportedMediaType,
    /// A required extension the SBC does not implement on this leg (sent with Unsupported).
    BadExtension,
    /// A session interval below our minimum (RFC 4028 §6; sent with Min-SE).
    SessionIntervalTooSmall,
    /// No dialog or transaction for the request (RFC 3261 §12.2.2).
    CallDoesNotExist,
    /// A merged request (RFC 3261 §8.2.2.2).
    LoopDetected,
    /// Max-Forwards reached 0 (RFC 3261 §16.3).
    TooManyHops,
    /// The INVITE was cancelled, or its call ended before the answer.
    RequestTerminated,
    /// SDP that cannot be anchored at the relay.
    NotAcceptableHere,
    /// An INVITE crossing one of ours on the same dialog (RFC 3261 §14.2).
    RequestPending,
    /// A broken internal invariant (the media layer lost a session it was given).
    ServerInternalError,
    /// A method the SBC does not know (RFC 3261 §8.2.1).
    NotImplemented,
    /// Admission limits, exhausted relay ports, or an unreachable trunk (with Retry-After).
    ServiceUnavailable,
}

impl Refusal {
    /// The status code on the wire.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::MalformedCredentials => StatusCode::BAD_REQUEST,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::ProxyAuthenticationRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadExtension => StatusCode::BAD_EXTENSION,
            Self::SessionIntervalTooSmall => StatusCode::SESSION_INTERVAL_TOO_SMALL,
            Self::CallDoesNotExist => StatusCode::CALL_DOES_NOT_EXIST,
            Self::LoopDetected => StatusCode::LOOP_DETECTED,
            Self::TooManyHops => StatusCode::TOO_MANY_HOPS,
            Self::RequestTerminated => StatusCode::REQUEST_TERMINATED,
            Self::NotAcceptableHere => StatusCode::NOT_ACCEPTABLE_HERE,
            Self::RequestPending => StatusCode::REQUEST_PENDING,
            Self::ServerInternalError => StatusCode::SERVER_INTERNAL_ERROR,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status code as a number.
    pub const fn code(self) -> u16 {
        self.status().as_u16()
    }

    /// The reason phrase: the RFC's for the code, except where a more precise one helps the
    /// peer's operator and names nothing of ours.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MalformedCredentials => "Malformed Proxy-Authorization",
            other => other.status().standard_phrase(),
        }
    }
}

impl From<&MediaError> for Refusal {
    /// The answer to an offer the media layer refused.
    fn from(e: &MediaError) -> Self {
        match e.status_code() {
            503 => Self::ServiceUnavailable,
            488 => Self::NotAcceptableHere,
            _ => Self::ServerInternalError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_is_the_rfc_code_with_its_phrase() {
        let table = [
            (Refusal::BadRequest, 400, "Bad Request"),
            (
                Refusal::MalformedCredentials,
                400,
                "Malformed Proxy-Authorization",
            ),
            (Refusal::Forbidden, 403, "Forbidden"),
            (Refusal::NotFound, 404, "Not Found"),
            (Refusal::MethodNotAllowed, 405, "Method Not Allowed"),
            (Refusal::NotAcceptable, 406, "Not Acceptable"),
            (
                Refusal::ProxyAuthenticationRequired,
                407,
                "Proxy Authentication Required",
            ),
            (Refusal::RequestTimeout, 408, "Request Timeout"),
            (Refusal::UnsupportedMediaType, 415, "Unsupported Media Type"),
            (Refusal::BadExtension, 420, "Bad Extension"),
            (
                Refusal::SessionIntervalTooSmall,
                422,
                "Session Interval Too Small",
            ),
            (
                Refusal::CallDoesNotExist,
                481,
                "Call/Transaction Does Not Exist",
            ),
            (Refusal::LoopDetected, 482, "Loop Detected"),
            (Refusal::TooManyHops, 483, "Too Many Hops"),
            (Refusal::RequestTerminated, 487, "Request Terminated"),
            (Refusal::NotAcceptableHere, 488, "Not Acceptable Here"),
            (Refusal::RequestPending, 491, "Request Pending"),
            (Refusal::ServerInternalError, 500, "Server Internal Error"),
            (Refusal::NotImplemented, 501, "Not Implemented"),
            (Refusal::ServiceUnavailable, 503, "Service Unavailable"),
        ];
        for (refusal, code, phrase) in table {
            assert_eq!(
                (refusal.code(), refusal.reason()),
                (code, phrase),
                "{refusal:?}"
            );
        }
    }

    #[test]
    fn a_lost_media_session_is_a_500_with_the_500_phrase() {
        let r = Refusal::from(&MediaError::UnknownSession(crate::media::SessionId(7)));
        assert_eq!((r.code(), r.reason()), (500, "Server Internal Error"));
    }
}
