//! Media relay: port pools, latching, the userspace relay, the media manager that implements
//! the call layer's [`sbc_proto::media::MediaControl`] contract, per-leg SRTP termination
//! (`srtp.rs`), and the XDP fast path loader.
//! See `docs/media.md`.

pub mod diagnosis;
pub mod finals;
pub mod latch;
pub mod manager;
pub mod policy;
pub mod pool;
pub(crate) mod relay;
pub mod rtp;
pub(crate) mod srtp;
pub mod xdp;

pub use manager::{MediaManager, MediaSettings};
