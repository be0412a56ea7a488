//! The fast-path mappings a stream has asked of the kernel, kept compactly: every concurrent
//! call holds them (four per socketless stream), and a [`FastPath`] of `SocketAddr`s is 228
//! bytes where an IPv4 mapping needs 64. IPv4 mappings (nearly all) are stored in a fixed
//! IPv4 form; any other is boxed whole. The conversion is lossless both ways, so the table
//! reads back exactly the [`FastPath`] it stored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use super::fast_path::{FastPath, KernelLatch, PathMode};

/// A stream's installed mappings, in the order they were pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed(Vec<Packed>);

impl Installed {
    /// The mappings, unpacked.
    pub fn iter(&self) -> impl Iterator<Item = FastPath> + '_ {
        self.0.iter().map(Packed::unpack)
    }

    /// The `i`-th mapping.
    pub fn get(&self, i: usize) -> Option<FastPath> {
        self.0.get(i).map(Packed::unpack)
    }

    /// How many mappings are installed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a mapping.
    pub fn push(&mut self, m: FastPath) {
        self.0.push(Packed::pack(m));
    }

    /// Removes and returns the `i`-th mapping; `None` past the end.
    pub fn remove(&mut self, i: usize) -> Option<FastPath> {
        (i < self.0.len()).then(|| self.0.remove(i).unpack())
    }

    /// Rewrites every mapping through `f` (kernel latches change peers and flags in place).
    pub fn update(&mut self, mut f: impl FnMut(&mut FastPath)) {
        for p in &mut self.0 {
            let mut m = p.unpack();
            f(&mut m);
            *p = Packed::pack(m);
        }
    }
}

impl From<Vec<FastPath>> for Installed {
    fn from(v: Vec<FastPath>) -> Self {
        Self(v.into_iter().map(Packed::pack).collect())
    }
}

/// One mapping: IPv4 inline, anything else boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Packed {
    V4(V4),
    Other(Box<FastPath>),
}

/// A [`FastPath`] whose addresses and source prefixes are all IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V4 {
    ingress: SocketAddrV4,
    expect: SocketAddrV4,
    egress: SocketAddrV4,
    dst: SocketAddrV4,
    reverse: SocketAddrV4,
    sources: [Option<(Ipv4Addr, u8)>; 3],
    slot: u32,
    generation: u32,
    strict: bool,
    mode: Mode,
}

/// [`PathMode`] without its payload (a kernel mapping's policy is in [`V4`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Relay,
    Kernel { awaiting: bool },
    Pass,
}

impl Packed {
    fn pack(m: FastPath) -> Self {
        V4::pack(&m).map_or_else(|| Self::Other(Box::new(m)), Self::V4)
    }

    fn unpack(&self) -> FastPath {
        match self {
            Self::V4(v) => v.unpack(),
            Self::Other(m) => **m,
        }
    }
}

impl V4 {
    fn pack(m: &FastPath) -> Option<Self> {
        let v4 = |a: SocketAddr| match a {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        };
        // A mapping that is not a kernel one has no policy: its reverse endpoint and sources
        // are stored as the unspecified ones and never read back.
        let (mode, latch) = match m.mode {
            PathMode::Relay => (Mode::Relay, None),
            PathMode::Kernel(k) => (
                Mode::Kernel {
                    awaiting: k.awaiting,
                },
                Some(k),
            ),
            PathMode::Pass => (Mode::Pass, None),
        };
        let mut sources = [None; 3];
        let mut reverse = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        if let Some(k) = latch {
            reverse = v4(k.reverse)?;
            for (to, from) in sources.iter_mut().zip(k.sources) {
                *to = match from {
                    None => None,
                    Some((IpAddr::V4(ip), len)) => Some((ip, len)),
                    Some((IpAddr::V6(_), _)) => return None,
                };
            }
        }
        Some(Self {
            ingress: v4(m.ingress)?,
            expect: v4(m.expect)?,
            egress: v4(m.egress)?,
            dst: v4(m.dst)?,
            reverse,
            sources,
            slot: m.slot,
            generation: m.generation,
            strict: m.strict,
            mode,
        })
    }

    fn unpack(&self) -> FastPath {
        let mode = match self.mode {
            Mode::Relay => PathMode::Relay,
            Mode::Pass => PathMode::Pass,
            Mode::Kernel { awaiting } => PathMode::Kernel(KernelLatch {
                awaiting,
                sources: self
                    .sources
                    .map(|s| s.map(|(ip, len)| (IpAddr::V4(ip), len))),
                reverse: SocketAddr::V4(self.reverse),
            }),
        };
        FastPath {
            ingress: SocketAddr::V4(self.ingress),
            expect: SocketAddr::V4(self.expect),
            egress: SocketAddr::V4(self.egress),
            dst: SocketAddr::V4(self.dst),
            strict: self.strict,
            slot: self.slot,
            generation: self.generation,
            mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fast_path::NO_SLOT;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    fn kernel(ingress: &str, sources: [Option<(IpAddr, u8)>; 3]) -> FastPath {
        FastPath {
            ingress: a(ingress),
            expect: a("0.0.0.0:0"),
            egress: a("198.18.2.1:20002"),
            dst: a("198.18.2.2:5000"),
            strict: true,
            slot: 7,
            generation: 0xdead_beef,
            mode: PathMode::Kernel(KernelLatch {
                awaiting: true,
                sources,
                reverse: a("198.18.2.1:20002"),
            }),
        }
    }

    /// Every concurrent socketless call holds four mappings: an IPv4 one must stay a quarter
    /// of a `FastPath` (228 bytes) so they cannot silently grow back.
    #[test]
    fn an_ipv4_mapping_is_small() {
        let size = std::mem::size_of::<Packed>();
        assert!(size <= 64, "a stored mapping is {size} bytes");
    }

    #[test]
    fn every_kind_of_mapping_reads_back_as_stored() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
        let v4 = kernel(
            "198.18.1.1:20000",
            [
                Some((ip("198.18.1.2"), 32)),
                None,
                Some((ip("10.0.0.0"), 8)),
            ],
        );
        let relay = FastPath {
            mode: PathMode::Relay,
            strict: false,
            ..v4
        };
        let pass = FastPath {
            ingress: a("198.18.1.1:20001"),
            expect: a("198.18.1.1:20001"),
            egress: a("198.18.1.1:20001"),
            dst: a("198.18.1.1:20001"),
            strict: false,
            slot: NO_SLOT,
            generation: 0,
            mode: PathMode::Pass,
        };
        // IPv6 anywhere (an address or a source prefix) is kept whole.
        let v6_source = kernel(
            "198.18.1.1:20000",
            [Some((ip("2001:db8::1"), 128)), None, None],
        );
        let v6 = FastPath {
            ingress: a("[2001:db8::1]:20000"),
            expect: a("[2001:db8::2]:4000"),
            egress: a("[2001:db8::3]:20002"),
            dst: a("[2001:db8::4]:5000"),
            mode: PathMode::Relay,
            ..v4
        };
        let all = vec![v4, relay, pass, v6_source, v6];
        let stored = Installed::from(all.clone());
        assert_eq!(stored.iter().collect::<Vec<_>>(), all);
        assert!(matches!(stored.0[0], Packed::V4(_)));
        assert!(matches!(stored.0[3], Packed::Other(_)));
        assert!(matches!(stored.0[4], Packed::Other(_)));
    }

    #[test]
    fn an_update_rewrites_in_place_and_remove_takes_one_out() {
        let mut stored = Installed::default();
        stored.push(kernel("198.18.1.1:20000", [None; 3]));
        stored.push(kernel("198.18.1.1:20001", [None; 3]));
        stored.update(|m| {
            if m.ingress == a("198.18.1.1:20001") {
                m.expect = a("198.18.1.9:4001");
            }
        });
        assert_eq!(stored.get(1).map(|m| m.expect), Some(a("198.18.1.9:4001")));
        assert_eq!(stored.get(0).map(|m| m.expect), Some(a("0.0.0.0:0")));
        assert_eq!(
            stored.remove(0).map(|m| m.ingress),
            Some(a("198.18.1.1:20000"))
        );
        assert_eq!(stored.len(), 1);
        assert_eq!(stored.remove(1), None);
    }
}
