//! The resource limits a message is parsed under.

/// Resource limits applied while parsing. Exceeding one is an error, never a truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (start line + headers + body), default 65,535 bytes: the largest UDP
    /// payload, and far above any legitimate trunk message.
    pub max_message: usize,
    /// Most header fields, default 128 (a large INVITE carries about 30).
    pub max_headers: usize,
    /// Longest header field including its folded lines, and longest start line; default
    /// 8,192 bytes.
    pub max_header_len: usize,
    /// Most Via values, default 70: each hop adds one Via and decrements Max-Forwards, whose
    /// recommended initial value is 70 (RFC 3261 §8.1.1.6), so more Vias than that cannot come
    /// from a well-behaved path. (RFC 4475 §3.1.1.7 `longreq` carries 34.)
    pub max_vias: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 65_535,
            max_headers: 128,
            max_header_len: 8_192,
            max_vias: 70,
        }
    }
}
