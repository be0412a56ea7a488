//! Media relay runtime: the media manager that runs the sans-I/O
//! [`sbc_proto::media::MediaTable`] (which also holds each stream's SRTP contexts) for the call
//! layer's turns and the admin API, the
//! executor of the table's commands, the userspace relay (its packet path and worker threads),
//! the XDP fast path loader, the one-way-audio diagnosis and the last views kept for call
//! detail records. See `docs/media.md`.

pub mod diagnosis;
pub(crate) mod executor;
pub mod finals;
pub(crate) mod latch_events;
pub(crate) mod mailbox;
pub mod manager;
pub mod neighbour;
pub mod policy;
pub(crate) mod relay;
pub(crate) mod reported;
pub(crate) mod tables;
pub mod view;
pub(crate) mod worker;
pub mod xdp;
pub mod xdp_maps;
pub(crate) mod xsk_relay;

pub use manager::{MediaManager, MediaSettings};
