//! Media relay runtime: the media manager that implements the call layer's
//! [`sbc_proto::media::MediaControl`] contract over the sans-I/O
//! [`sbc_proto::media::MediaTable`], the executor of the table's commands, the userspace relay
//! and the XDP fast path loader. See `docs/media.md`.

pub(crate) mod executor;
pub mod manager;
pub mod policy;
pub(crate) mod relay;
pub mod view;
pub mod xdp;

pub use manager::{MediaManager, MediaSettings};
