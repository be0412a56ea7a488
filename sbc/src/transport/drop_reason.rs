//! Why the transport discarded input: a closed set, so the `reason` metric label stays bounded.

/// Why input was dropped or a connection closed for bad input (`sbc_sip_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// A datagram larger than `sip.max_message_size`.
    Oversize,
    /// Bytes that are not SIP at all (RFC 3261 §18.1.2/§18.2.1: discard).
    NotSip,
    /// A malformed message that cannot be answered (a response, or a request without the
    /// headers a response needs).
    Unanswerable,
    /// The SIP core's queue is full (UDP only; streams wait instead).
    CoreBusy,
    /// A stream message exceeds `sip.max_message_size`: the connection is closed.
    StreamTooLarge,
    /// A stream message without Content-Length (mandatory, RFC 3261 §18.3): closed.
    MissingContentLength,
    /// A stream message with a malformed or repeated Content-Length: closed.
    BadContentLength,
    /// No bytes for `sip.idle_timeout_s`: closed.
    IdleTimeout,
    /// A message started but did not complete within `sip.message_timeout_s`: closed.
    MessageTimeout,
    /// An accept beyond the per-listener or total connection limit: refused.
    ConnectionLimit,
    /// The TLS handshake of an accepted connection failed or timed out.
    TlsHandshake,
    /// A read error (reset, TLS alert) on a stream.
    ReadError,
    /// A connection from a source on `[limits] deny`: refused at accept.
    Denied,
    /// A connection from a source outside the side's allowlist: refused at accept (or closed
    /// when a live ACL change removes it).
    NotAllowed,
    /// A connection from a banned source: refused at accept, or closed when the ban starts.
    Banned,
    /// An accept beyond `sip.max_connections_per_source`: refused.
    SourceConnectionLimit,
    /// An accepted connection that did not deliver a valid SIP message within
    /// `sip.first_message_timeout_s` (keep-alives do not count): closed.
    FirstMessageTimeout,
    /// A stateless reply not sent: the source is not admitted on that side.
    ReplyNotAllowed,
    /// A stateless reply not sent: over `[limits] stateless_reply_rate`.
    ReplyRateLimited,
}

impl DropReason {
    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::NotSip => "not_sip",
            Self::Unanswerable => "unanswerable",
            Self::CoreBusy => "core_busy",
            Self::StreamTooLarge => "stream_too_large",
            Self::MissingContentLength => "missing_content_length",
            Self::BadContentLength => "bad_content_length",
            Self::IdleTimeout => "idle_timeout",
            Self::MessageTimeout => "message_timeout",
            Self::ConnectionLimit => "connection_limit",
            Self::TlsHandshake => "tls_handshake",
            Self::ReadError => "read_error",
            Self::Denied => "denied",
            Self::NotAllowed => "acl",
            Self::Banned => "banned",
            Self::SourceConnectionLimit => "source_connection_limit",
            Self::FirstMessageTimeout => "first_message_timeout",
            Self::ReplyNotAllowed => "reply_acl",
            Self::ReplyRateLimited => "reply_rate",
        }
    }
}
