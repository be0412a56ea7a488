//! A session (one call) and its streams, as the table keeps them.

use super::*;

/// A session (one call).
#[derive(Debug)]
pub struct Session {
    /// Streams in `m=` order.
    pub streams: Vec<Stream>,
    /// An answer was committed (the media timeout runs from then on).
    pub committed: bool,
    /// Last media activity.
    pub activity: Activity,
    /// The media timeout fired.
    pub timed_out: bool,
    /// Recreated from pinned fast-path mappings after a restart.
    pub adopted: bool,
    /// Signaling peers and trunk, as the call layer last said.
    pub peers: MediaPeers,
    /// Outside relay ports counted against `peers.trunk`'s quota.
    pub quota_ports: usize,
    /// Bumped whenever the session's snapshot would change (descriptions, peers, RTP
    /// latches): [`MediaTable::state_version`].
    pub version: u64,
}

/// One stream of a [`Session`].
#[derive(Debug)]
pub struct Stream {
    /// The relay endpoints (advertised address); port 0 for a disabled stream.
    pub relay: StreamRelay,
    /// The relay address each leg's ports are bound to (one of its side's addresses; what
    /// `relay` advertises maps to it), indexed by [`Side::index`].
    pub binds: [std::net::IpAddr; 2],
    /// The per-packet half: peers (latches, counters), SRTP, payload maps, DTMF.
    pub path: crate::media::path::PathHandle,
    /// Fast-path mappings asked of the kernel (stored compactly).
    pub installed: crate::media::installed::Installed,
    /// Fast-path packets of this stream at the last counter read.
    pub xdp_packets: u64,
    /// Socketless: no relay socket is bound, the XDP program latches and relays the stream
    /// ([`MediaTable::set_kernel_latch`]).
    pub kernel: bool,
    /// The stream was socketless at some point, so latch policies may be in the kernel under
    /// its relay ports (a mapping that left the kernel mode leaves its policy there until
    /// the mapping's removal, which takes the policy along).
    pub(super) policies: bool,
}

impl Stream {
    /// Whether the stream has relay ports (an `m=` line with port 0 has none).
    pub fn enabled(&self) -> bool {
        self.relay.inside.rtp_port != 0
    }

    /// Fast-path mappings that forward (pass-through mappings of a socket-bound stream do not
    /// count).
    pub fn fast_paths(&self) -> usize {
        self.installed
            .iter()
            .filter(|m| m.mode != crate::media::fast_path::PathMode::Pass)
            .count()
    }

    pub(super) fn ports(&self) -> [u16; 2] {
        [self.relay.inside.rtp_port, self.relay.outside.rtp_port]
    }

    /// The relay RTP endpoints as bound (the fast-path map keys), inside and outside.
    pub fn bound(&self) -> [SocketAddr; 2] {
        let [i, o] = self.ports();
        [
            SocketAddr::new(self.binds[0], i),
            SocketAddr::new(self.binds[1], o),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every concurrent call holds its streams, so their size is memory per call: a plain RTP
    /// stream (nearly all of them) must not carry SRTP or other rarely used state inline
    /// (inline SRTP contexts made a stream ~9 KB, 90 MB at 10,000 calls).
    #[test]
    fn a_stream_is_small() {
        // 1,360 bytes with the DTMF state inline; 1,056 with it boxed and the two bind
        // addresses several relay addresses per side need (32 bytes); 832 with the peers'
        // userspace statistics boxed (`PeerState::seen`).
        let size = std::mem::size_of::<Stream>();
        assert!(size <= 832, "a Stream is {size} bytes");
        assert!(std::mem::size_of::<crate::media::crypto::StreamSrtp>() <= 32);
        // DTMF interworking state is boxed until used (376 bytes inline before).
        let dtmf = std::mem::size_of::<crate::media::dtmf::StreamDtmfState>();
        assert!(dtmf <= 32, "a stream's DTMF state is {dtmf} bytes");
    }
}
