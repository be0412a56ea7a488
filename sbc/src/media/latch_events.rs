//! The reader of the XDP program's latch events: a socketless stream latches in the kernel,
//! which reports each latch on a ring buffer; this task wakes on it (one epoll-registered fd
//! for every stream) and hands the latches to the media table, so that latched addresses,
//! activity, views and call-state snapshots stay true.

use std::net::SocketAddr;

use aya::maps::{MapData, RingBuf};
use sbc_ebpf_common::{LatchEvent, RelayRange};
use sbc_proto::media::RelaySettings;
use tokio::io::{Interest, unix::AsyncFd};

use super::{executor, xdp::XdpRelay};

/// Latches read per wake-up before the table is locked (more wait for the next round).
const BATCH: usize = 256;

/// Readies the program for socketless streams: declares the relay port ranges (so that it
/// drops packets to ports no stream holds) and takes the latch event ring buffer. `None` (and
/// the ranges cleared again) if either fails: streams then bind sockets as without it.
pub(crate) fn prepare(xdp: &mut XdpRelay, relay: &RelaySettings) -> Option<RingBuf<MapData>> {
    let binds = relay.bind_addresses();
    let mut ranges = Vec::with_capacity(binds.len());
    // Every relay address of both sides (validation keeps them within the map's entries).
    for bind in binds {
        let r = RelayRange {
            addr: executor::mapping_key(SocketAddr::new(bind, 0)).addr,
            port_min: relay.port_min,
            // The RTCP port above the last RTP port belongs to the range too.
            port_max: relay.port_max.saturating_add(1),
        };
        if !ranges.contains(&r) {
            ranges.push(r);
        }
    }
    if ranges.len() > sbc_ebpf_common::MAX_RELAY_RANGES as usize {
        // Validation allows at most that many; past it some addresses' unallocated ports would
        // reach the stack instead of being dropped here (harmless: nothing listens there).
        tracing::warn!(
            addresses = ranges.len(),
            max = sbc_ebpf_common::MAX_RELAY_RANGES,
            "more relay addresses than XDP relay ranges; the rest are not dropped in XDP"
        );
    }
    let ring = xdp
        .set_relay_ranges(&ranges)
        .and_then(|()| xdp.take_latch_events());
    match ring {
        Ok(ring) => {
            tracing::info!(
                "XDP latches socketless streams; relay ports without a call are dropped in XDP"
            );
            Some(ring)
        }
        Err(e) => {
            tracing::warn!(error = %e, "in-kernel latching unavailable; streams bind sockets");
            if let Err(e) = xdp.set_relay_ranges(&[]) {
                tracing::warn!(error = %e, "clearing the relay ranges failed");
            }
            None
        }
    }
}

/// Reads latch events until `deliver` returns false (the manager is gone) or the ring fails.
/// `deliver` gets (relay endpoint, latched peer) pairs in the order the kernel made them.
pub(crate) async fn run(
    ring: RingBuf<MapData>,
    mut deliver: impl FnMut(&[(SocketAddr, SocketAddr)]) -> bool,
) {
    // SAFETY: the ring buffer owns its map's file descriptor (an `OwnedFd` in `MapData`) and
    // is moved into the `AsyncFd`, so the descriptor stays open and the same for the
    // `AsyncFd`'s whole life; `as_raw_fd` always returns that one descriptor.
    let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %e, "cannot poll the XDP latch events; latches stay unseen");
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "polling the XDP latch events failed");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while batch.len() < BATCH {
            let Some(item) = ring.next() else { break };
            match parse(&item) {
                Some(l) => batch.push(l),
                None => tracing::warn!(len = item.len(), "malformed XDP latch event"),
            }
        }
        if batch.len() < BATCH {
            // Drained: wait for the next notification.
            guard.clear_ready();
        }
        drop(guard);
        if !batch.is_empty() && !deliver(&batch) {
            return;
        }
        batch.clear();
    }
}

/// A [`LatchEvent`] from its bytes: (relay endpoint, latched peer).
fn parse(b: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    if b.len() < std::mem::size_of::<LatchEvent>() {
        return None;
    }
    let addr = |at: usize| -> Option<[u8; 16]> { b.get(at..at + 16)?.try_into().ok() };
    // Ports are in network byte order, as on the wire.
    let port = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    let relay = SocketAddr::new(executor::ip_of(&addr(0)?), port(16)?);
    let peer = SocketAddr::new(executor::ip_of(&addr(20)?), port(36)?);
    Some((relay, peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbc_ebpf_common::{MappingKey, ipv4_mapped};

    #[test]
    fn events_parse_to_relay_and_peer() {
        let e = LatchEvent {
            key: MappingKey {
                addr: ipv4_mapped([198, 18, 1, 1]),
                port: 20_000u16.to_be(),
                pad: 0,
            },
            peer_addr: ipv4_mapped([198, 18, 1, 2]),
            peer_port: 4000u16.to_be(),
            pad: 0,
        };
        let mut b = Vec::new();
        b.extend_from_slice(&e.key.addr);
        b.extend_from_slice(&e.key.port.to_ne_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&e.peer_addr);
        b.extend_from_slice(&e.peer_port.to_ne_bytes());
        b.extend_from_slice(&[0, 0]);
        assert_eq!(
            parse(&b),
            Some((
                "198.18.1.1:20000".parse().expect("literal"),
                "198.18.1.2:4000".parse().expect("literal")
            ))
        );
        assert_eq!(parse(&b[..20]), None);
    }
}
