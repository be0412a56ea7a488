//! Batched BPF map writes: `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_DELETE_BATCH` (Linux 5.6), one
//! `bpf(2)` call for many keys, which aya 0.14 does not wrap. A socketless call installs four
//! mappings with their latch policies at its offer and removes them at its end: one system
//! call per map and step instead of one per entry (issue 16).
//!
//! The kernel processes the entries in order and stops at the first that fails; it then
//! reports how many it did, so the caller knows which entry failed and may go on after it.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    Pod,
    maps::{HashMap, MapData},
};

/// `enum bpf_cmd` values (`include/uapi/linux/bpf.h`).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr` (`include/uapi/linux/bpf.h`); the kernel zero-fills
/// the rest of the union when the size passed is this struct's.
#[repr(C)]
#[derive(Debug, Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    /// Entries given; the kernel writes back how many it processed.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A batch the kernel stopped in: `done` entries went through, entry `done` failed with
/// `error` (the later ones were not tried).
#[derive(Debug)]
pub struct Partial {
    /// Entries processed before the failing one.
    pub done: usize,
    /// Why entry `done` failed.
    pub error: io::Error,
}

impl Partial {
    /// Whether the kernel does not know the command (before Linux 5.6, or a map type without
    /// batch operations): nothing was done, and entry-by-entry calls are the way.
    pub fn unsupported(&self) -> bool {
        // 524 is the kernel's internal ENOTSUPP, which some map types return as it is.
        self.done == 0
            && matches!(
                self.error.raw_os_error(),
                Some(libc::EINVAL | libc::ENOTSUP | libc::ENOSYS | 524)
            )
    }
}

/// Inserts or replaces `keys[i]` → `values[i]` in `map`, in order (`BPF_ANY`).
/// `keys` and `values` must have the same length.
pub fn update<K: Pod, V: Pod>(
    map: &HashMap<&mut MapData, K, V>,
    keys: &[K],
    values: &[V],
) -> Result<(), Partial> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        ..BatchAttr::default()
    };
    batch(BPF_MAP_UPDATE_BATCH, map, keys.len(), attr)
}

/// Deletes `keys` from `map`, in order. A key that is not there stops the batch like any
/// other failure (`ENOENT`).
pub fn delete<K: Pod, V: Pod>(
    map: &HashMap<&mut MapData, K, V>,
    keys: &[K],
) -> Result<(), Partial> {
    let attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        ..BatchAttr::default()
    };
    batch(BPF_MAP_DELETE_BATCH, map, keys.len(), attr)
}

fn batch<K: Pod, V: Pod>(
    cmd: libc::c_long,
    map: &HashMap<&mut MapData, K, V>,
    n: usize,
    mut attr: BatchAttr,
) -> Result<(), Partial> {
    if n == 0 {
        return Ok(());
    }
    let count = u32::try_from(n).map_err(|_| Partial {
        done: 0,
        error: io::Error::from_raw_os_error(libc::E2BIG),
    })?;
    let data: &MapData = aya::maps::IterableMap::map(map);
    attr.count = count;
    attr.map_fd = u32::try_from(data.fd().as_fd().as_raw_fd()).unwrap_or(u32::MAX);
    // SAFETY: `attr` is a valid `bpf_attr` prefix of the size passed. The kernel reads `count`
    // keys (and values) of the map's key (value) size from the pointers: the slices hold
    // `count` elements of `K` (`V`), whose sizes aya's `HashMap::try_from` checked against
    // the map's definition (and `XdpRelay::load` those of a pinned map it reused), and both
    // outlive the call; the kernel writes only `attr.count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &raw mut attr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(Partial {
        done: (attr.count as usize).min(n),
        error,
    })
}
