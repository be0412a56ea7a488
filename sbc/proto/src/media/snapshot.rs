//! A media session as persisted with its call (restart recovery, issue 19): the relay
//! endpoints of every stream on both legs, what each leg's SDP described, and where each leg
//! was latched. The call layer takes it from [`MediaTable::snapshot`] and hands it back to
//! [`MediaTable::restore`] after a restart, so the relay re-installs the same ports and
//! addresses and the SDP both peers already hold stays true.
//!
//! [`MediaTable::snapshot`]: crate::media::MediaTable::snapshot
//! [`MediaTable::restore`]: crate::media::MediaTable::restore

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::media::{
    Direction, MediaPeers, RelayEndpoint, SessionId, Side, StreamDesc, StreamRelay,
};

/// One media session, restorable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MediaSnapshot {
    /// The session id the relay used (kept across the restart: fast-path mappings adopted from
    /// pinned maps are keyed by it).
    pub session: u64,
    /// Per `m=` line, in order.
    pub streams: Vec<StreamSnapshot>,
    /// The inside leg's signaling peer (latching policy).
    #[serde(default)]
    pub peer_inside: Option<IpAddr>,
    /// The outside leg's signaling peer.
    #[serde(default)]
    pub peer_outside: Option<IpAddr>,
    /// The carrier-side trunk's name (port quota).
    #[serde(default)]
    pub trunk: Option<String>,
}

/// One stream of a [`MediaSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamSnapshot {
    /// The relay's endpoint facing the PBX.
    pub relay_inside: EndpointSnapshot,
    /// The relay's endpoint facing the carrier.
    pub relay_outside: EndpointSnapshot,
    /// What the inside leg's SDP described, once it did.
    #[serde(default)]
    pub sdp_inside: Option<DescSnapshot>,
    /// What the outside leg's SDP described, once it did.
    #[serde(default)]
    pub sdp_outside: Option<DescSnapshot>,
    /// Where the relay sends to the inside leg once latched (the peer's observed source).
    #[serde(default)]
    pub latched_inside: Option<SocketAddr>,
    /// Where the relay sends to the outside leg once latched.
    #[serde(default)]
    pub latched_outside: Option<SocketAddr>,
}

/// A relay endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointSnapshot {
    /// Address written into `c=`.
    pub addr: IpAddr,
    /// The relay address the ports are bound to, one of the side's `media_addresses` (absent
    /// in records written before a side could have several: the restore then finds it by
    /// `addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// RTP port.
    pub rtp: u16,
    /// RTCP port.
    pub rtcp: u16,
}

/// A peer's description of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DescSnapshot {
    /// Connection address.
    pub addr: IpAddr,
    /// RTP port (0: disabled).
    pub rtp: u16,
    /// `a=rtcp` port, if given.
    #[serde(default)]
    pub rtcp: Option<u16>,
    /// `a=rtcp-mux`.
    #[serde(default)]
    pub mux: bool,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub dir: DirSnapshot,
}

/// [`Direction`] as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirSnapshot {
    /// `a=sendrecv`.
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl MediaSnapshot {
    /// The session id.
    pub const fn id(&self) -> SessionId {
        SessionId(self.session)
    }

    /// The call's peers as the relay knew them.
    pub fn peers(&self) -> MediaPeers {
        MediaPeers {
            inside: self.peer_inside,
            outside: self.peer_outside,
            trunk: self.trunk.clone(),
        }
    }

    /// The snapshot of a session from its parts (what a relay implementation keeps).
    pub fn new(session: SessionId, streams: Vec<StreamSnapshot>, peers: &MediaPeers) -> Self {
        Self {
            session: session.0,
            streams,
            peer_inside: peers.inside,
            peer_outside: peers.outside,
            trunk: peers.trunk.clone(),
        }
    }
}

impl StreamSnapshot {
    /// A stream from its relay endpoints and the legs' descriptions.
    pub fn new(
        relay: &StreamRelay,
        inside: Option<&StreamDesc>,
        outside: Option<&StreamDesc>,
    ) -> Self {
        Self {
            relay_inside: relay.inside.into(),
            relay_outside: relay.outside.into(),
            sdp_inside: inside.map(DescSnapshot::from),
            sdp_outside: outside.map(DescSnapshot::from),
            latched_inside: None,
            latched_outside: None,
        }
    }

    /// The relay endpoints.
    pub fn relay(&self) -> StreamRelay {
        StreamRelay {
            inside: self.relay_inside.into(),
            outside: self.relay_outside.into(),
        }
    }

    /// What `leg`'s SDP described.
    pub fn sdp(&self, leg: Side) -> Option<StreamDesc> {
        match leg {
            Side::Inside => self.sdp_inside,
            Side::Outside => self.sdp_outside,
        }
        .map(StreamDesc::from)
    }

    /// Where `leg` was latched.
    pub const fn latched(&self, leg: Side) -> Option<SocketAddr> {
        match leg {
            Side::Inside => self.latched_inside,
            Side::Outside => self.latched_outside,
        }
    }
}

impl From<RelayEndpoint> for EndpointSnapshot {
    fn from(e: RelayEndpoint) -> Self {
        Self {
            addr: e.addr,
            bind: None,
            rtp: e.rtp_port,
            rtcp: e.rtcp_port,
        }
    }
}

impl From<EndpointSnapshot> for RelayEndpoint {
    fn from(e: EndpointSnapshot) -> Self {
        Self {
            addr: e.addr,
            rtp_port: e.rtp,
            rtcp_port: e.rtcp,
        }
    }
}

impl From<&StreamDesc> for DescSnapshot {
    fn from(d: &StreamDesc) -> Self {
        Self {
            addr: d.addr,
            rtp: d.rtp_port,
            rtcp: d.rtcp_port,
            mux: d.rtcp_mux,
            dir: match d.direction {
                Direction::SendRecv => DirSnapshot::SendRecv,
                Direction::SendOnly => DirSnapshot::SendOnly,
                Direction::RecvOnly => DirSnapshot::RecvOnly,
                Direction::Inactive => DirSnapshot::Inactive,
            },
        }
    }
}

impl From<DescSnapshot> for StreamDesc {
    fn from(d: DescSnapshot) -> Self {
        Self {
            addr: d.addr,
            rtp_port: d.rtp,
            rtcp_port: d.rtcp,
            rtcp_mux: d.mux,
            direction: match d.dir {
                DirSnapshot::SendRecv => Direction::SendRecv,
                DirSnapshot::SendOnly => Direction::SendOnly,
                DirSnapshot::RecvOnly => Direction::RecvOnly,
                DirSnapshot::Inactive => Direction::Inactive,
            },
        }
    }
}
