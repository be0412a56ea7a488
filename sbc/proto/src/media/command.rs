//! What the media table asks the runtime to do. The runtime drains
//! [`MediaTable::poll_command`](super::table::MediaTable::poll_command) after every call into
//! the table and executes each command, reporting failures back through the table's
//! `handle_*` methods.

use std::net::SocketAddr;

use super::{
    Side,
    fast_path::{FastPath, StatsSlot},
    stream_key::StreamKey,
};

/// One action for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind (or reuse) the sockets of `addr`'s port (RTP) and the port above (RTCP) for
    /// `stream`'s `leg`; once both legs are bound, relay the stream in userspace. On failure
    /// call [`MediaTable::handle_bind_failed`](super::table::MediaTable::handle_bind_failed).
    Bind {
        /// The stream.
        stream: StreamKey,
        /// Its side.
        leg: Side,
        /// Bind address and RTP port.
        addr: SocketAddr,
    },
    /// Bind the sockets of `addr`'s port (RTP) and the port above (RTCP) ahead of any stream
    /// (a warm pair, see [`super::warm`]) and keep them; a later [`MediaCommand::Bind`] of
    /// `addr` takes them. Answer with
    /// [`MediaTable::handle_prebound`](super::table::MediaTable::handle_prebound), bound or not.
    Prebind {
        /// Bind address and RTP port.
        addr: SocketAddr,
    },
    /// Give up the warm pair of `addr` bound by [`MediaCommand::Prebind`] (a socketless
    /// stream took its ports and needs no sockets).
    Unbind {
        /// Bind address and RTP port.
        addr: SocketAddr,
    },
    /// Stop relaying `stream` in userspace and give its sockets up (they may be kept bound for
    /// reuse: their ports are back in the pool).
    Close {
        /// The stream.
        stream: StreamKey,
    },
    /// Insert (or replace) a fast-path mapping on a statistics slot it did not have; its
    /// counters start from zero. A socketless mapping awaiting its latch gets its latch policy
    /// first. On failure call
    /// [`MediaTable::handle_install_failed`](super::table::MediaTable::handle_install_failed).
    Install(FastPath),
    /// Rewrite an installed mapping's entry in place (its flags, peers or destination change;
    /// not its latch policy), keeping its statistics slot and counters.
    Update(FastPath),
    /// Rewrite the latch policy of an installed socketless mapping awaiting its latch (its
    /// allowed sources changed, or it is re-armed). Comes before the [`MediaCommand::Update`]
    /// that re-arms the mapping, so the kernel never sees it await with the old policy.
    Policy(FastPath),
    /// Remove the mapping of packets arriving at `ingress` (and then its latch policy).
    Remove {
        /// The relay endpoint of the mapping.
        ingress: SocketAddr,
        /// A latch policy may be installed under the same key (the stream was socketless):
        /// remove it too. Without, there is none to remove.
        policy: bool,
    },
    /// `stream`'s relay has packets of its own to send (generated DTMF): wake its task, which
    /// then sends what [`MediaTable::poll_generated`](super::table::MediaTable::poll_generated)
    /// gives and sleeps until
    /// [`MediaTable::generated_deadline`](super::table::MediaTable::generated_deadline).
    Wake {
        /// The stream.
        stream: StreamKey,
    },
    /// Read the packet counters of `stream`'s mappings (their statistics `slots`, each counted
    /// only on the CPUs whose counters carry its generation) and report their sum with
    /// [`MediaTable::handle_fast_path_packets`](super::table::MediaTable::handle_fast_path_packets).
    ReadCounters {
        /// The stream.
        stream: StreamKey,
        /// Its mappings' statistics slots.
        slots: [Option<StatsSlot>; 2],
    },
}
