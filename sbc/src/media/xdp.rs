//! Loads the XDP relay program (built from `ebpf/relay` by `build.rs` and embedded here),
//! attaches it to media interfaces, and reads and writes its maps.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf, XskMap},
    programs::{
        ProgramError, Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use sbc_ebpf_common::{
    LatchPolicy, MAP_LATCH_EVENTS, MAP_LATCH_POLICIES, MAP_MAPPING_STATS, MAP_MAPPINGS,
    MAP_RELAY_RANGES, MAP_STATS, MAP_XSK_IFACES, MAP_XSKS, MAX_RELAY_RANGES, Mapping, MappingKey,
    MappingStats, PROGRAM_NAME, RelayRange, Stat,
};

use crate::config::XdpMode;

/// The compiled XDP program, exactly as `build.rs` produced it for this binary.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sbc-xdp"));

/// Where the program's maps are pinned for an SBC instance: `<bpffs>/sbc/<instance>`.
pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/sbc").join(instance)
}

/// Errors of the XDP fast path. None is fatal to the SBC: it falls back to userspace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpError {
    /// The object could not be loaded (no CAP_BPF, old kernel, verifier rejection, ...).
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The object lacks an expected program or map: a build mismatch.
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    /// Loading the program into the kernel failed.
    #[error("loading the XDP program: {0}")]
    Program(#[source] ProgramError),
    /// Attaching to an interface failed in every allowed mode.
    #[error("attaching XDP to {interface} ({mode}): {source}")]
    Attach {
        /// Interface name.
        interface: String,
        /// Mode(s) tried.
        mode: &'static str,
        /// Last error.
        #[source]
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("XDP map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The error.
        #[source]
        source: aya::maps::MapError,
    },
    /// Pinning (or re-opening a pinned) XDP link failed.
    #[error("pinned XDP link {path}: {reason}")]
    Link {
        /// Pin path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A pinned map from a previous instance has another size than this configuration needs
    /// (the media port range changed): `sbc xdp detach` drops the old pins.
    #[error(
        "pinned XDP map {map} holds {pinned} entries, the port range needs {wanted} \
         (after changing [media] port_min/port_max run `sbc xdp detach`)"
    )]
    PinnedSize {
        /// Map name.
        map: &'static str,
        /// Its size.
        pinned: u32,
        /// The size wanted.
        wanted: u32,
    },
    /// A pinned map from a previous instance holds values of another layout (a build whose
    /// map types differ, e.g. before the mappings' statistics generation): `sbc xdp detach`
    /// drops the old pins (and the media they carry).
    #[error(
        "pinned XDP map {map} holds {pinned}-byte values, this build's are {wanted} bytes \
         (an SBC of another version pinned it: run `sbc xdp detach`)"
    )]
    PinnedLayout {
        /// Map name.
        map: &'static str,
        /// Its value size.
        pinned: u32,
        /// The value size of this build.
        wanted: u32,
    },
    /// The pin directory could not be created.
    #[error("creating bpffs pin directory {path}: {source}")]
    PinDir {
        /// Directory.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How the program ended up attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// A link pinned by a previous instance was found and now runs this program (its mode is
    /// whatever that instance attached with).
    Reused,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Reused => "reused",
        })
    }
}

/// Path of the pinned link of `interface` in a pin directory.
fn link_pin(dir: &Path, interface: &str) -> PathBuf {
    dir.join(format!("link_{interface}"))
}

/// Removes an instance's pin directory: its pinned links (which detaches the program from its
/// interfaces) and its pinned maps (which drops every mapping). `sbc xdp detach` uses this.
/// Returns how many pinned objects were removed; a missing directory is not an error.
pub fn remove_pins(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for entry in entries {
        std::fs::remove_file(entry?.path())?;
        n += 1;
    }
    std::fs::remove_dir(dir)?;
    Ok(n)
}

/// One interface the program is attached to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Mode it is attached in.
    pub mode: AttachMode,
}

/// Global counters of the program, summed over CPUs, indexed like [`Stat::ALL`].
pub type GlobalStats = [u64; Stat::COUNT as usize];

/// The loaded XDP relay: program, maps, and its attachments. Dropping it detaches the program;
/// pinned maps (and the mappings in them) outlive it.
pub struct XdpRelay {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    /// Parallel to `attachments`: the link and, when pinned, its bpffs path.
    links: Vec<(XdpLinkId, Option<PathBuf>)>,
    pin_dir: Option<PathBuf>,
}

impl fmt::Debug for XdpRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpRelay")
            .field("attachments", &self.attachments)
            .finish_non_exhaustive()
    }
}

impl XdpRelay {
    /// Loads the embedded program with room for `mappings` fast-path mappings (see
    /// [`sbc_proto::media::RelaySettings::fast_path_mappings`]). With `pin_dir`, maps are
    /// pinned there, or reused if a previous instance pinned them (so established media
    /// survives a restart) and they have that size.
    pub fn load(pin_dir: Option<&Path>, mappings: u32) -> Result<Self, XdpError> {
        let mut loader = EbpfLoader::new();
        for name in [MAP_MAPPINGS, MAP_MAPPING_STATS, MAP_LATCH_POLICIES] {
            loader.map_max_entries(name, mappings);
        }
        if let Some(dir) = pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| XdpError::PinDir {
                path: dir.to_owned(),
                source,
            })?;
            for name in [MAP_MAPPINGS, MAP_MAPPING_STATS, MAP_STATS] {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(OBJECT)?;
        if pin_dir.is_some() {
            // A reused pin keeps the size and layout it was created with (the loader's size
            // applies to new maps only). Checked before the program loads: the verifier
            // would refuse a program reading past a smaller pinned value.
            // (Key and value sizes: the map writes, batched ones included, pass buffers of
            // this build's types, which the kernel reads with the map's sizes.)
            let layouts = [
                (MAP_MAPPINGS, size_of::<MappingKey>(), size_of::<Mapping>()),
                (
                    MAP_MAPPING_STATS,
                    size_of::<u32>(),
                    size_of::<MappingStats>(),
                ),
            ];
            for (map, key, value) in layouts {
                let info = match ebpf.map(map) {
                    Some(Map::HashMap(d) | Map::PerCpuArray(d)) => {
                        d.info().map_err(|source| XdpError::Map { map, source })?
                    }
                    _ => return Err(XdpError::Missing(map)),
                };
                if info.max_entries() != mappings {
                    return Err(XdpError::PinnedSize {
                        map,
                        pinned: info.max_entries(),
                        wanted: mappings,
                    });
                }
                let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                if (info.key_size(), info.value_size()) != (size(key), size(value)) {
                    return Err(XdpError::PinnedLayout {
                        map,
                        pinned: info.value_size(),
                        wanted: size(value),
                    });
                }
            }
        }
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Missing("sbc_relay program"))?
            .try_into()
            .map_err(XdpError::Program)?;
        program.load().map_err(XdpError::Program)?;
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
            links: Vec::new(),
            pin_dir: pin_dir.map(Path::to_owned),
        })
    }

    /// Whether maps and links are pinned (they outlive this process).
    pub fn is_pinned(&self) -> bool {
        self.pin_dir.is_some()
    }

    fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Missing("sbc_relay program"))?
            .try_into()
            .map_err(XdpError::Program)
    }

    /// Attaches to `interface`, keeping the attachment alive beyond this process when loaded
    /// with a pin directory: a link pinned there by a previous instance is reused (atomically
    /// switched to this program with `bpf_link_update`, so no packet sees a detached interface
    /// and no second program is attached); otherwise a new link is attached and pinned.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<AttachMode, XdpError> {
        let Some(dir) = self.pin_dir.clone() else {
            return self.attach_unpinned(interface, mode);
        };
        let path = link_pin(&dir, interface);
        let link_err = |reason: String| XdpError::Link {
            path: path.clone(),
            reason,
        };
        if path.exists() {
            match self.reuse_link(&path) {
                Ok(id) => {
                    self.attachments.push(Attachment {
                        interface: interface.to_owned(),
                        mode: AttachMode::Reused,
                    });
                    self.links.push((id, Some(path)));
                    return Ok(AttachMode::Reused);
                }
                Err(e) => {
                    // E.g. the interface was deleted and re-created: the old link is defunct.
                    tracing::warn!(error = %e, "stale pinned XDP link; attaching afresh");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let attached = self.attach_unpinned(interface, mode)?;
        let Some((id, _)) = self.links.pop() else {
            return Err(link_err("attachment vanished".into()));
        };
        let program = self.program()?;
        let link: XdpLink = program.take_link(id).map_err(XdpError::Program)?;
        // Only bpf_link attachments (Linux >= 5.9) can be pinned; a netlink one would be
        // detached by dropping it here, so that is reported as an error.
        let fd_link = FdLink::try_from(link).map_err(|e| link_err(e.to_string()))?;
        let pinned = fd_link.pin(&path).map_err(|e| link_err(e.to_string()))?;
        let id = self.adopt_fd_link(FdLink::from(pinned))?;
        self.links.push((id, Some(path)));
        Ok(attached)
    }

    fn reuse_link(&mut self, path: &Path) -> Result<XdpLinkId, XdpError> {
        let pinned = PinnedLink::from_pin(path).map_err(|e| XdpError::Link {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.adopt_fd_link(FdLink::from(pinned))
    }

    /// Makes the program own `fd_link`, switching the link to this program.
    fn adopt_fd_link(&mut self, fd_link: FdLink) -> Result<XdpLinkId, XdpError> {
        let link = XdpLink::try_from(fd_link).map_err(|e| XdpError::Link {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
        self.program()?
            .attach_to_link(link)
            .map_err(XdpError::Program)
    }

    /// Attaches to `interface` for the life of this value. `Auto` tries native, then generic.
    fn attach_unpinned(&mut self, interface: &str, mode: XdpMode) -> Result<AttachMode, XdpError> {
        let tries: &[(aya::programs::xdp::XdpMode, AttachMode)] = match mode {
            XdpMode::Native => &[(aya::programs::xdp::XdpMode::Driver, AttachMode::Native)],
            XdpMode::Generic => &[(aya::programs::xdp::XdpMode::Skb, AttachMode::Generic)],
            XdpMode::Auto | XdpMode::Off => &[
                (aya::programs::xdp::XdpMode::Driver, AttachMode::Native),
                (aya::programs::xdp::XdpMode::Skb, AttachMode::Generic),
            ],
        };
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Missing("sbc_relay program"))?
            .try_into()
            .map_err(XdpError::Program)?;
        let mut last = None;
        for (flags, attach_mode) in tries {
            match program.attach(interface, *flags) {
                Ok(link) => {
                    self.attachments.push(Attachment {
                        interface: interface.to_owned(),
                        mode: *attach_mode,
                    });
                    self.links.push((link, None));
                    return Ok(*attach_mode);
                }
                Err(e) => last = Some(e),
            }
        }
        let mode_name = match mode {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto | XdpMode::Off => "native, then generic",
        };
        Err(XdpError::Attach {
            interface: interface.to_owned(),
            mode: mode_name,
            source: last.unwrap_or(ProgramError::AlreadyLoaded),
        })
    }

    /// Detaches from every interface, also removing pinned links (the program stays loaded,
    /// maps stay pinned). Not called on a normal exit: pinned attachments are meant to outlive
    /// the process.
    pub fn detach_all(&mut self) {
        let Some(program) = self.ebpf.program_mut(PROGRAM_NAME) else {
            return;
        };
        let Ok(program) = <&mut Xdp>::try_from(program) else {
            return;
        };
        for (a, (link, pin)) in self.attachments.drain(..).zip(self.links.drain(..)) {
            if let Some(pin) = pin
                && let Err(e) = std::fs::remove_file(&pin)
            {
                tracing::warn!(path = %pin.display(), error = %e, "unpinning XDP link failed");
            }
            if let Err(e) = program.detach(link) {
                tracing::warn!(interface = %a.interface, error = %e, "detaching XDP failed");
            }
        }
    }

    /// The interfaces the program is attached to.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The program's global counters, summed over CPUs.
    pub fn stats(&self) -> Result<GlobalStats, XdpError> {
        let map = self
            .ebpf
            .map(MAP_STATS)
            .ok_or(XdpError::Missing("stats map"))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_STATS,
                source,
            })?;
        let mut out = [0u64; Stat::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            let per_cpu = array.get(&idx, 0).map_err(|source| XdpError::Map {
                map: MAP_STATS,
                source,
            })?;
            *slot = per_cpu.iter().copied().sum();
        }
        Ok(out)
    }

    /// The program's map `name` (for [`super::xdp_maps::XdpMaps::of`]).
    pub(crate) fn map(&self, name: &str) -> Option<&Map> {
        self.ebpf.map(name)
    }

    /// Keys of every installed mapping (e.g. to adopt them after a restart).
    pub fn mapping_keys(&self) -> Result<Vec<MappingKey>, XdpError> {
        let map = self
            .ebpf
            .map(MAP_MAPPINGS)
            .ok_or(XdpError::Missing("mappings map"))?;
        let hash: HashMap<&MapData, MappingKey, Mapping> =
            HashMap::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_MAPPINGS,
                source,
            })?;
        hash.keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| XdpError::Map {
                map: MAP_MAPPINGS,
                source,
            })
    }

    /// How many latch policies the policies map holds.
    pub fn latch_policies(&self) -> Result<usize, XdpError> {
        let map_err = |source| XdpError::Map {
            map: MAP_LATCH_POLICIES,
            source,
        };
        let map = self
            .ebpf
            .map(MAP_LATCH_POLICIES)
            .ok_or(XdpError::Missing("latch policies map"))?;
        let hash: HashMap<&MapData, MappingKey, LatchPolicy> =
            HashMap::try_from(map).map_err(map_err)?;
        hash.keys()
            .try_fold(0, |n, k| k.map(|_| n + 1))
            .map_err(map_err)
    }

    /// Every installed mapping with its value (adoption after a restart).
    pub fn mappings(&self) -> Result<Vec<(MappingKey, Mapping)>, XdpError> {
        let map = self
            .ebpf
            .map(MAP_MAPPINGS)
            .ok_or(XdpError::Missing("mappings map"))?;
        let hash: HashMap<&MapData, MappingKey, Mapping> =
            HashMap::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_MAPPINGS,
                source,
            })?;
        hash.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| XdpError::Map {
                map: MAP_MAPPINGS,
                source,
            })
    }

    /// Declares the relay port ranges the SBC owns (at most [`MAX_RELAY_RANGES`]; the rest
    /// of the entries are cleared): the program drops packets to their ports that match no
    /// mapping. An empty slice turns the drop off.
    pub fn set_relay_ranges(&mut self, ranges: &[RelayRange]) -> Result<(), XdpError> {
        let map_err = |source| XdpError::Map {
            map: MAP_RELAY_RANGES,
            source,
        };
        let map = self
            .ebpf
            .map_mut(MAP_RELAY_RANGES)
            .ok_or(XdpError::Missing("relay ranges map"))?;
        let mut array: Array<&mut MapData, RelayRange> = Array::try_from(map).map_err(map_err)?;
        for i in 0..MAX_RELAY_RANGES {
            let r = ranges.get(i as usize).copied().unwrap_or_default();
            array.set(i, r, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// Registers the AF_XDP socket `fd` bound to `ifindex`'s RX `queue` at index `base + queue`
    /// of the program's socket map, and `base` as the interface's first index.
    pub fn register_xsk(
        &mut self,
        ifindex: u32,
        base: u32,
        queue: u32,
        fd: impl std::os::fd::AsRawFd,
    ) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(MAP_XSKS)
            .ok_or(XdpError::Missing("AF_XDP socket map"))?;
        let mut xsks = XskMap::try_from(map).map_err(|source| XdpError::Map {
            map: MAP_XSKS,
            source,
        })?;
        xsks.set(base + queue, fd, 0)
            .map_err(|source| XdpError::Map {
                map: MAP_XSKS,
                source,
            })?;
        let map_err = |source| XdpError::Map {
            map: MAP_XSK_IFACES,
            source,
        };
        let map = self
            .ebpf
            .map_mut(MAP_XSK_IFACES)
            .ok_or(XdpError::Missing("AF_XDP interface map"))?;
        let mut ifaces: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(map).map_err(map_err)?;
        ifaces.insert(ifindex, base, 0).map_err(map_err)
    }

    /// Takes the ring buffer of latch events out of the object, for the one task that reads
    /// it (`latch_events.rs`).
    pub fn take_latch_events(&mut self) -> Result<RingBuf<aya::maps::MapData>, XdpError> {
        let map = self
            .ebpf
            .take_map(MAP_LATCH_EVENTS)
            .ok_or(XdpError::Missing("latch events ring buffer"))?;
        RingBuf::try_from(map).map_err(|source| XdpError::Map {
            map: MAP_LATCH_EVENTS,
            source,
        })
    }
}
