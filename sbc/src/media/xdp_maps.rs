//! One signaling shard's handles on the XDP program's per-call maps: the mappings, the latch
//! policies and the per-mapping statistics. They are duplicates of the program's map
//! descriptors ([`XdpMaps::of`]), so each shard's executor writes its calls'
//! entries and reads their counters without a lock shared with the other shards: the kernel
//! serializes per entry, and two shards never write the same key (a key is a relay port, and
//! each shard owns its ports, `sbc_proto::media::share`). The program object and what is
//! written once (attachments, relay ranges, AF_XDP sockets, the latch ring) stay in
//! [`super::xdp::XdpRelay`] behind its lock.

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use sbc_ebpf_common::{
    LatchPolicy, MAP_LATCH_POLICIES, MAP_MAPPING_STATS, MAP_MAPPINGS, Mapping, MappingKey,
    MappingStats,
};

use std::os::fd::AsFd as _;

use super::xdp::{XdpError, XdpRelay};

/// Handles on the per-call maps; see the module docs.
pub struct XdpMaps {
    mappings: Map,
    policies: Map,
    stats: Map,
    /// Whether the kernel takes batched map writes (until it refuses the first one).
    pub(crate) batch: bool,
}

impl std::fmt::Debug for XdpMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpMaps")
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl XdpMaps {
    /// Handles of their own on `relay`'s per-call maps for one signaling shard's executor:
    /// duplicates of the maps' descriptors, so that shards write and read their calls'
    /// entries without sharing the relay's lock.
    pub fn of(relay: &XdpRelay) -> Result<Self, XdpError> {
        let dup = |name: &'static str| -> Result<MapData, XdpError> {
            let data = match relay.map(name) {
                Some(Map::HashMap(d) | Map::PerCpuArray(d)) => d,
                _ => return Err(XdpError::Missing(name)),
            };
            let fd = data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| XdpError::Map {
                    map: name,
                    source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                        call: "dup",
                        io_error: e,
                    }),
                })?;
            MapData::from_fd(fd).map_err(|source| XdpError::Map { map: name, source })
        };
        Ok(Self::new(
            dup(MAP_MAPPINGS)?,
            dup(MAP_LATCH_POLICIES)?,
            dup(MAP_MAPPING_STATS)?,
        ))
    }

    /// The maps of these descriptors: the mappings and latch policies (hash maps) and the
    /// statistics slots (a per-CPU array).
    fn new(mappings: MapData, policies: MapData, stats: MapData) -> Self {
        Self {
            mappings: Map::HashMap(mappings),
            policies: Map::HashMap(policies),
            stats: Map::PerCpuArray(stats),
            batch: true,
        }
    }

    fn map(&self, name: &'static str) -> Option<&Map> {
        match name {
            MAP_MAPPINGS => Some(&self.mappings),
            MAP_LATCH_POLICIES => Some(&self.policies),
            MAP_MAPPING_STATS => Some(&self.stats),
            _ => None,
        }
    }

    /// The map `name` and the batching flag, borrowed apart.
    fn map_mut(&mut self, name: &'static str) -> (Option<&mut Map>, &mut bool) {
        let map = match name {
            MAP_MAPPINGS => Some(&mut self.mappings),
            MAP_LATCH_POLICIES => Some(&mut self.policies),
            MAP_MAPPING_STATS => Some(&mut self.stats),
            _ => None,
        };
        (map, &mut self.batch)
    }

    /// Installs or replaces `keys[i]` → `mappings[i]`, in order, in as few system calls as the
    /// kernel allows ([`crate::sys::bpf_batch`]). An entry the kernel refuses is reported to
    /// `refused` (its index) and the rest still go in.
    pub fn update_mappings(
        &mut self,
        keys: &[MappingKey],
        mappings: &[Mapping],
        refused: &mut dyn FnMut(usize, XdpError),
    ) {
        self.write_all(MAP_MAPPINGS, keys, mappings, refused);
    }

    /// Sets the latch policies `keys[i]` → `policies[i]`, as [`Self::update_mappings`].
    pub fn insert_policies(
        &mut self,
        keys: &[MappingKey],
        policies: &[LatchPolicy],
        refused: &mut dyn FnMut(usize, XdpError),
    ) {
        self.write_all(MAP_LATCH_POLICIES, keys, policies, refused);
    }

    /// Removes the mappings of `mappings` and then the latch policies of `policies` (a mapping
    /// awaiting its latch without a policy drops everything, so never the policy first),
    /// batched as [`Self::update_mappings`]. Keys already gone are not failures (though each
    /// costs a call: the kernel stops a batch there); other failures are logged.
    pub fn remove_all(&mut self, mappings: &[MappingKey], policies: &[MappingKey]) {
        self.delete_all::<Mapping>(MAP_MAPPINGS, mappings);
        self.delete_all::<LatchPolicy>(MAP_LATCH_POLICIES, policies);
    }

    fn write_all<V: aya::Pod>(
        &mut self,
        map: &'static str,
        keys: &[MappingKey],
        values: &[V],
        refused: &mut dyn FnMut(usize, XdpError),
    ) {
        let (data, batched) = self.map_mut(map);
        let batch = *batched;
        let Some(data) = data else {
            for i in 0..keys.len() {
                refused(i, XdpError::Missing(map));
            }
            return;
        };
        let mut hash: HashMap<&mut MapData, MappingKey, V> = match HashMap::try_from(data) {
            Ok(h) => h,
            Err(source) => {
                // A build mismatch (types of another layout): no entry can go in.
                tracing::warn!(map, error = %source, "XDP map of an unexpected type");
                for i in 0..keys.len() {
                    refused(i, XdpError::Missing(map));
                }
                return;
            }
        };
        let mut from = 0;
        while batch && from < keys.len() {
            match crate::sys::bpf_batch::update(&hash, &keys[from..], &values[from..]) {
                Ok(()) => return,
                Err(p) if p.unsupported() && from == 0 => {
                    *batched = false;
                    tracing::info!(error = %p.error, "batched XDP map writes unavailable; one call per entry");
                    break;
                }
                Err(p) => {
                    let source = aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                        call: "bpf_map_update_batch",
                        io_error: p.error,
                    });
                    refused(from + p.done, XdpError::Map { map, source });
                    from += p.done + 1;
                }
            }
        }
        if from >= keys.len() {
            return;
        }
        for (i, (k, v)) in keys.iter().zip(values).enumerate().skip(from) {
            if let Err(source) = hash.insert(k, v, 0) {
                refused(i, XdpError::Map { map, source });
            }
        }
    }

    fn delete_all<V: aya::Pod>(&mut self, map: &'static str, keys: &[MappingKey]) {
        let (data, batched) = self.map_mut(map);
        let batch = *batched;
        let Some(data) = data else {
            return;
        };
        let mut hash: HashMap<&mut MapData, MappingKey, V> = match HashMap::try_from(data) {
            Ok(h) => h,
            Err(source) => {
                tracing::warn!(map, error = %source, "removing XDP map entries failed");
                return;
            }
        };
        let mut from = 0;
        while batch && from < keys.len() {
            match crate::sys::bpf_batch::delete(&hash, &keys[from..]) {
                Ok(()) => return,
                Err(p) if p.unsupported() && from == 0 => {
                    *batched = false;
                    break;
                }
                Err(p) => {
                    // A key already gone (ENOENT: a stream that never had a latch policy, a
                    // mapping removed twice) is not a failure; the rest still go.
                    if p.error.raw_os_error() != Some(nix::libc::ENOENT) {
                        tracing::warn!(map, error = %p.error, "removing an XDP map entry failed");
                    }
                    from += p.done + 1;
                }
            }
        }
        for k in keys.iter().skip(from) {
            match hash.remove(k) {
                Err(e) if !absent(&e) => {
                    tracing::warn!(map, error = %e, "removing an XDP map entry failed");
                }
                _ => {}
            }
        }
    }

    /// Forwarding statistics of the mapping of `generation` on statistics slot `slot`, summed
    /// over the CPUs whose counters are that mapping's (another generation's are a former
    /// mapping's, which the program replaces at this mapping's first packet on that CPU).
    pub fn mapping_stats(&self, slot: u32, generation: u32) -> Result<MappingStats, XdpError> {
        let map_err = |source| XdpError::Map {
            map: MAP_MAPPING_STATS,
            source,
        };
        let map = self
            .map(MAP_MAPPING_STATS)
            .ok_or(XdpError::Missing("stats slots map"))?;
        let array: PerCpuArray<&MapData, MappingStats> =
            PerCpuArray::try_from(map).map_err(map_err)?;
        let per_cpu = array.get(&slot, 0).map_err(map_err)?;
        Ok(per_cpu.iter().filter(|s| s.generation == generation).fold(
            MappingStats {
                generation,
                ..MappingStats::default()
            },
            |acc, s| MappingStats {
                packets: acc.packets + s.packets,
                bytes: acc.bytes + s.bytes,
                last_seen_ns: acc.last_seen_ns.max(s.last_seen_ns),
                ..acc
            },
        ))
    }
}

/// A delete of a key that is not there: aya 0.14 reports the kernel's ENOENT from
/// `bpf_map_delete_elem` as a syscall error, not as `KeyNotFound`. Removing what is already
/// gone is not a failure (a stream that never had a latch policy, a mapping removed twice).
fn absent(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => {
            s.io_error.raw_os_error() == Some(nix::libc::ENOENT)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use sbc_ebpf_common::{LatchPolicy, Mapping, MappingKey};

    use super::absent;
    use crate::media::xdp::XdpRelay;

    fn key(port: u16) -> MappingKey {
        MappingKey {
            addr: sbc_ebpf_common::ipv4_mapped([198, 18, 1, 1]),
            port: port.to_be(),
            pad: 0,
        }
    }

    /// The batched writes of `executor::flush_writes` on the real maps, through a shard's own
    /// handles (needs CAP_BPF: skipped without it): entries go in and come out in one call per
    /// map, a key already gone in the middle of a removal does not stop the others, both maps
    /// drain, and what one handle wrote the program's own maps (and another shard's handles)
    /// hold.
    #[test]
    fn batched_map_writes_insert_replace_and_drain() {
        let x = match XdpRelay::load(None, 64) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("skipped: cannot load the XDP object here ({e})");
                return;
            }
        };
        let mut m = super::XdpMaps::of(&x).expect("a shard's handles");
        let other = super::XdpMaps::of(&x).expect("another shard's handles");
        let keys = [key(20_000), key(20_002), key(20_004)];
        let values: Vec<Mapping> = (0..3u32)
            .map(|i| Mapping {
                slot: i,
                generation: 9,
                ..Mapping::default()
            })
            .collect();
        let mut refused = Vec::new();
        m.insert_policies(&keys, &[LatchPolicy::default(); 3], &mut |i, e| {
            refused.push((i, e.to_string()));
        });
        m.update_mappings(&keys, &values, &mut |i, e| refused.push((i, e.to_string())));
        // Replaced in place.
        let again = Mapping {
            slot: 7,
            ..values[1]
        };
        m.update_mappings(&keys[1..2], &[again], &mut |i, e| {
            refused.push((i, e.to_string()));
        });
        assert_eq!(refused, []);
        let mut got = x.mappings().expect("read back");
        got.sort_by_key(|(k, _)| u16::from_be(k.port));
        assert_eq!(
            got,
            [(keys[0], values[0]), (keys[1], again), (keys[2], values[2])]
        );
        assert_eq!(
            other.mapping_stats(7, 9).map(|s| s.packets).ok(),
            Some(0),
            "the other handles read the same statistics slots"
        );
        // The middle key removed already: the batch goes on past it.
        m.remove_all(&keys[1..2], &keys[1..2]);
        m.remove_all(&keys, &keys);
        assert_eq!(x.mapping_keys().expect("read back"), []);
        assert_eq!(
            x.latch_policies().expect("read back"),
            0,
            "the latch policies drain with the mappings"
        );
        assert!(m.batch, "this kernel takes batched map writes");
    }

    #[test]
    fn deleting_an_absent_key_is_not_a_failure() {
        let syscall = |errno| {
            aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_delete_elem",
                io_error: std::io::Error::from_raw_os_error(errno),
            })
        };
        assert!(absent(&syscall(nix::libc::ENOENT)));
        assert!(absent(&aya::maps::MapError::KeyNotFound));
        assert!(!absent(&syscall(nix::libc::EPERM)));
    }
}
