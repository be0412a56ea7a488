//! What the media layer is told about a call's peers ([`MediaPeers`]): the signaling peer of
//! each leg (media from a NAT'd PBX comes from the address it signals from) and the trunk (its
//! media networks and relay port quota).

use std::net::IpAddr;

use super::{B2bua, admission::TrunkId, call::CallId, side_index};
use crate::{media::MediaPeers, net::Side};

impl B2bua {
    /// The peers of a call being set up: `origin` came from `from`, the other leg goes to `to`.
    pub(super) fn new_media_peers(
        &self,
        origin: Side,
        from: IpAddr,
        to: IpAddr,
        trunk: Option<TrunkId>,
    ) -> MediaPeers {
        let mut ips = [None, None];
        ips[side_index(origin)] = Some(from);
        ips[side_index(origin.other())] = Some(to);
        MediaPeers {
            inside: ips[0],
            outside: ips[1],
            trunk: self.trunk_name(trunk),
        }
    }

    /// The peers of an existing call, as its legs and trunk are now.
    pub(super) fn call_media_peers(&self, call: CallId) -> MediaPeers {
        let Some(c) = self.calls.get(&call) else {
            return MediaPeers::default();
        };
        MediaPeers {
            inside: Some(c.leg(Side::Inside).peer.addr.ip()),
            outside: Some(c.leg(Side::Outside).peer.addr.ip()),
            trunk: self.trunk_name(c.trunk),
        }
    }

    fn trunk_name(&self, trunk: Option<TrunkId>) -> Option<String> {
        trunk
            .and_then(|t| self.cfg.trunks.get(t.index()))
            .map(|t| t.name.clone())
    }
}
