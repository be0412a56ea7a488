//! SDP errors.

/// Why an SDP body or one of its lines could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body does not start with `v=0` (RFC 8866 §5.1).
    #[error("not an SDP body (no v=0 first line)")]
    NotSdp,
    /// A line is not `<letter>=<value>` (RFC 8866 §5).
    #[error("malformed line {line}")]
    BadLine {
        /// Zero-based line number.
        line: usize,
    },
    /// The `o=` line is missing or malformed.
    #[error("malformed or missing o= line")]
    BadOrigin,
    /// A `c=` line is malformed.
    #[error("malformed c= line")]
    BadConnection,
    /// An `m=` line is malformed.
    #[error("malformed m= line")]
    BadMedia,
    /// An attribute value is malformed.
    #[error("malformed a={0} attribute")]
    BadAttribute(&'static str),
    /// A field that must be text is not UTF-8.
    #[error("line {line} is not UTF-8")]
    NotUtf8 {
        /// Zero-based line number.
        line: usize,
    },
    /// The media section index does not exist.
    #[error("no media section {0}")]
    NoSuchMedia(usize),
}
