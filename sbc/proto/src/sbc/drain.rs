//! Graceful drain of the whole SBC: a state machine driven by the core's own inputs.
//!
//! [`Sbc::drain`](super::Sbc::drain) starts it (SIGTERM, `POST /api/v1/drain`): new calls and
//! OPTIONS are refused with 503 + Retry-After (`b2bua/drain.rs`) while the calls in progress
//! go on. When the last call ends, or at the drain timeout, whatever is left is ended with
//! BYE on both legs (CANCEL/487 before the answer), and the core waits, at most the BYE wait,
//! for the answers to what it sent, so neither peer is left retransmitting a BYE to nobody.
//! Then it is [`DrainState::Drained`] and the driver removes the registrations
//! ([`Sbc::shutdown`](super::Sbc::shutdown)) and exits. [`Sbc::end_now`](super::Sbc::end_now)
//! (a second signal) skips the rest of the wait.

use std::time::{Duration, Instant};

/// How a drain runs (`[general] drain_*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainConfig {
    /// How long calls in progress may go on before they are ended with BYE.
    pub timeout: Duration,
    /// `Retry-After` of the 503 to new calls and OPTIONS, seconds.
    pub retry_after_s: u32,
    /// How long to wait, after ending the last calls, for the answers to the BYEs (and
    /// relayed requests) still in flight.
    pub bye_wait: Duration,
}

/// Where a drain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainState {
    /// Not draining: new calls are taken.
    Running,
    /// New calls refused; the calls in progress may go on until `deadline`.
    Waiting {
        /// The drain timeout.
        deadline: Instant,
    },
    /// The remaining calls were ended; waiting until `deadline` at most for the answers.
    Ending {
        /// The end of the BYE wait.
        deadline: Instant,
    },
    /// Nothing left: the driver may remove the registrations and stop.
    Drained,
}

impl DrainState {
    /// Whether new calls are refused.
    pub const fn is_draining(self) -> bool {
        !matches!(self, Self::Running)
    }

    /// The label for logs and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting { .. } => "draining",
            Self::Ending { .. } => "ending_calls",
            Self::Drained => "drained",
        }
    }

    /// The next deadline of the drain, if one is armed.
    pub const fn deadline(self) -> Option<Instant> {
        match self {
            Self::Waiting { deadline } | Self::Ending { deadline } => Some(deadline),
            Self::Running | Self::Drained => None,
        }
    }
}

/// The drain's state and the BYE wait it was started with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Drain {
    pub(super) state: DrainState,
    pub(super) bye_wait: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            state: DrainState::Running,
            bye_wait: Duration::ZERO,
        }
    }
}
