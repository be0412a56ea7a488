//! Why a trunk proxy could not be resolved.

/// A failed lookup of one trunk proxy. The trunk keeps its last good addresses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name exists nowhere or has no usable record of the types asked for.
    #[error("no records for {name}")]
    NoRecords {
        /// The name asked for.
        name: String,
    },
    /// SRV says the service is decidedly not offered there (a single target of `.`,
    /// RFC 2782).
    #[error("SRV for {name} says the service is not available")]
    NotAvailable {
        /// The SRV name.
        name: String,
    },
    /// No answer in time from any configured server.
    #[error("lookup of {name} timed out")]
    Timeout {
        /// The name asked for.
        name: String,
    },
    /// Any other resolver failure (server failure, refused, I/O).
    #[error("lookup of {name} failed: {reason}")]
    Failed {
        /// The name asked for.
        name: String,
        /// The resolver's description.
        reason: String,
    },
}

impl LookupError {
    /// A bounded label for `sbc_dns_lookups_total{result}`.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::NoRecords { .. } => "no_records",
            Self::NotAvailable { .. } => "not_available",
            Self::Timeout { .. } => "timeout",
            Self::Failed { .. } => "error",
        }
    }
}

/// The resolver could not be set up (unreadable `/etc/resolv.conf` without `[dns] servers`).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct SetupError(pub String);
