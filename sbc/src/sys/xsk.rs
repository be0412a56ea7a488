//! AF_XDP sockets (XSK) for the relay of streams userspace must transform (SRTP): one socket
//! per interface and RX queue, each with its own UMEM, bound in copy mode (`XDP_COPY`, which
//! every driver supports, veth included). The XDP program redirects such streams' frames into
//! the RX ring; the relay writes frames to send into the TX ring and kicks the kernel with one
//! `sendto` per batch, or, while it polls, lets the `ppoll` it sleeps in send them
//! ([`sleep_sending`]).
//!
//! UMEM layout: [`FRAMES`] frames of [`FRAME_SIZE`] bytes; the first half is lent to the kernel
//! for receiving (fill ring → RX ring → back to the fill ring once read), the second half is
//! the socket's transmit pool (free list → TX ring → completion ring → free list). Each frame is
//! owned by exactly one of those places at any time, and every ring is as large as the frames
//! that can be in it, so no ring can overflow.
//!
//! Ring protocol (`include/uapi/linux/if_xdp.h`): each ring has a producer and a consumer index
//! (free-running `u32`s, shared with the kernel) and `size` (a power of two) entries; entry `i`
//! is at `i & (size - 1)`. The producer writes entries, then publishes the index with release
//! ordering; the consumer reads the index with acquire ordering, then the entries.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

/// Bytes per UMEM frame (a frame holds one packet: RTP is far below it).
pub const FRAME_SIZE: u32 = 2048;
/// Frames per socket: half for RX, half for TX. The UMEM is registered, so the kernel pins
/// all of it once the socket is opened (by the first socket-bound stream, see
/// `media::xsk_relay::XskPlan`), whether SRTP flows then or not: 2,048 × 2 KiB = 4 MiB per socket
/// (one per interface and RX queue). Its RX half, 1,024 frames, holds 25 ms at 40,000 packets/s
/// (the SRTP benchmark's most) between two passes of the relay.
pub const FRAMES: u32 = 2048;
/// Entries of each ring (all four): the frames one direction owns.
const RING: u32 = FRAMES / 2;
/// Most `sendto` calls per kick (each sends up to 32 frames in copy mode).
const KICKS: usize = 16;
/// Frames the kernel sends per `sendto` or poll of a copy-mode socket (`TX_BATCH_SIZE` in
/// `net/xdp/xsk.c`): what [`Xsk::kick_beyond`] may leave for [`sleep_sending`].
pub const POLL_SENDS: u32 = 32;
/// Sockets [`sleep_sending`] polls at once (frames usually leave through one per interface).
const POLL_FDS: usize = 16;

/// Entries ready to consume in a ring whose producer is at `prod` and consumer at `cons`
/// (free-running indexes: the difference is right across the `u32` wrap).
pub fn ready(prod: u32, cons: u32) -> u32 {
    prod.wrapping_sub(cons)
}

/// Entries a producer at `prod` may still write into a ring of `size` entries whose consumer
/// is at `cons`.
pub fn free(prod: u32, cons: u32, size: u32) -> u32 {
    size.saturating_sub(ready(prod, cons))
}

/// The slot of free-running index `i` in a ring of `size` entries (a power of two).
pub fn slot(i: u32, size: u32) -> usize {
    (i & (size - 1)) as usize
}

/// One mapped ring: its shared indexes and entries.
#[derive(Debug)]
struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    entries: NonNull<T>,
    size: u32,
    map: NonNull<libc::c_void>,
    map_len: usize,
}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `fd` at page offset `pgoff` described by `off`.
    fn map(fd: BorrowedFd<'_>, off: &libc::xdp_ring_offset, pgoff: u64) -> io::Result<Self> {
        let len = usize::try_from(off.desc)
            .ok()
            .and_then(|d| d.checked_add(RING as usize * size_of::<T>()))
            .ok_or_else(|| io::Error::other("ring offsets out of range"))?;
        let pgoff = libc::off_t::try_from(pgoff).map_err(io::Error::other)?;
        // SAFETY: a fresh shared mapping of the socket's ring, as if_xdp.h documents; the
        // kernel checks `pgoff` and `len` against the ring it created.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(p).ok_or_else(|| io::Error::other("mmap returned null"))?;
        let at = |o: u64| -> io::Result<NonNull<u8>> {
            let o = usize::try_from(o).map_err(io::Error::other)?;
            if o >= len {
                return Err(io::Error::other("ring offset beyond the mapping"));
            }
            // SAFETY: `o < len`, so the result stays inside the mapping.
            Ok(unsafe { map.cast::<u8>().add(o) })
        };
        Ok(Self {
            producer: at(off.producer)?.cast(),
            consumer: at(off.consumer)?.cast(),
            entries: at(off.desc)?.cast(),
            size: RING,
            map,
            map_len: len,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the kernel places the index, 4-byte aligned, inside the mapping, which lives
        // as long as `self`; it is only accessed atomically.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    /// The address of entry `i`.
    fn entry(&self, i: u32) -> NonNull<T> {
        // SAFETY: `slot` is below `size`, and the mapping holds `size` entries at `entries`.
        unsafe { self.entries.add(slot(i, self.size)) }
    }

    /// Reads entry `i` (which the producer has published).
    fn read(&self, i: u32) -> T {
        let p = self.entry(i);
        // SAFETY: `p` is an aligned entry inside the mapping; the producer wrote it before
        // publishing the index we read with acquire ordering.
        unsafe { p.read() }
    }

    /// Writes entry `i` (not yet published, so the kernel does not read it).
    fn write(&mut self, i: u32, v: T) {
        let p = self.entry(i);
        // SAFETY: as for `read`; the slot is ours until the index is published.
        unsafe { p.write(v) }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` created; nothing refers to it afterwards.
        unsafe {
            libc::munmap(self.map.as_ptr(), self.map_len);
        }
    }
}

/// A received frame: its UMEM address and length.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rx {
    /// Offset of the frame's first byte in the UMEM.
    pub addr: u64,
    /// Bytes.
    pub len: u32,
}

/// One AF_XDP socket bound to an interface's queue, with its UMEM and rings.
#[derive(Debug)]
pub struct Xsk {
    // Field order is drop order: the rings are unmapped and the socket closed before the UMEM
    // mapping (`_umem_map`, last) goes.
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    fd: OwnedFd,
    umem: NonNull<u8>,
    umem_len: usize,
    /// TX frames not in the kernel's hands.
    tx_free: Vec<u64>,
    /// Descriptors written to the TX ring since the last kick.
    tx_pending: u32,
    /// RX frames read since the fill ring was last replenished.
    to_fill: Vec<u64>,
    ifindex: u32,
    queue: u32,
    /// Last: unmapped after the rings and the socket are gone.
    _umem_map: Umem,
}

/// The UMEM mapping, unmapped on drop.
#[derive(Debug)]
struct Umem {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the anonymous mapping `Xsk::open` made; the socket that
        // registered it is closed already (it is dropped first), and no slice into it outlives
        // the `Xsk` that lent it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

// SAFETY: the raw pointers refer to this socket's own mappings, which move with it; nothing
// else aliases them in this process.
unsafe impl Send for Xsk {}

fn setsockopt<T>(fd: BorrowedFd<'_>, name: libc::c_int, value: &T) -> io::Result<()> {
    setsockopt_at(fd, libc::SOL_XDP, name, value)
}

fn setsockopt_at<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` is a valid, initialised `T` of `len` bytes for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an `int` socket option at `SOL_SOCKET`.
fn getsockopt_int(fd: BorrowedFd<'_>, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: `v` is writable for `len` bytes; the kernel writes at most that much.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_mut(&mut v).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Busy-polling time the relay asks for (`SO_BUSY_POLL`, µs). The relay only busy-polls
/// without blocking ([`Xsk::poll_napi`]: one NAPI poll per call), where the kernel ignores
/// the time; it must only be non-zero, which is what enables busy polling on the socket.
pub const BUSY_POLL_USECS: u32 = 20;

/// A socket's busy-polling state as the kernel reports it (`getsockopt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_PREFER_BUSY_POLL`: the socket's polls take the NAPI context over from softirq.
    pub prefer: bool,
    /// `SO_BUSY_POLL` (µs); 0 disables busy polling on the socket. (`SO_BUSY_POLL_BUDGET`
    /// cannot be read back: the kernel only sets it.)
    pub usecs: u32,
    /// `SO_INCOMING_NAPI_ID`: the NAPI context the socket's frames came from (0 until the
    /// first frame arrives, and for devices without NAPI).
    pub napi_id: u32,
}

impl BusyPoll {
    /// Whether a non-blocking receive on the socket runs its NAPI poll: busy polling is
    /// enabled and the kernel knows which NAPI context to poll (`sk_busy_loop` needs a valid
    /// NAPI id; `getsockopt` reports invalid ones as 0).
    pub fn engaged(&self) -> bool {
        self.prefer && self.usecs > 0 && self.napi_id != 0
    }
}

impl Xsk {
    /// Creates a socket with its UMEM and binds it in copy mode to `ifindex`'s RX queue `queue`.
    pub fn open(ifindex: u32, queue: u32) -> io::Result<Self> {
        // SAFETY: plain system call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: a fresh private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let umem = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap null"))?;
        // From here on a failure unmaps the UMEM (after the socket, dropped before it).
        let umem_map = Umem {
            ptr: umem,
            len: umem_len,
        };
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd.as_fd(), libc::XDP_UMEM_REG, &reg)?;
        setsockopt(fd.as_fd(), libc::XDP_UMEM_FILL_RING, &RING)?;
        setsockopt(fd.as_fd(), libc::XDP_UMEM_COMPLETION_RING, &RING)?;
        setsockopt(fd.as_fd(), libc::XDP_RX_RING, &RING)?;
        setsockopt(fd.as_fd(), libc::XDP_TX_RING, &RING)?;
        // SAFETY: all-zero is a valid value of this plain struct of integers.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = libc::socklen_t::try_from(size_of::<libc::xdp_mmap_offsets>())
            .map_err(io::Error::other)?;
        // SAFETY: `off` is writable for `len` bytes; the kernel writes at most that much.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                std::ptr::from_mut(&mut off).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if len as usize != size_of::<libc::xdp_mmap_offsets>() {
            // Kernels before 5.4 lack the rings' flags fields.
            return Err(io::Error::other("old xdp_mmap_offsets layout"));
        }
        let rx = Ring::map(fd.as_fd(), &off.rx, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(fd.as_fd(), &off.tx, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = Ring::map(fd.as_fd(), &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let completion = Ring::map(fd.as_fd(), &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let mut xsk = Self {
            rx,
            tx,
            fill,
            completion,
            fd,
            umem,
            umem_len,
            _umem_map: umem_map,
            tx_free: (RING..FRAMES).map(|f| u64::from(f * FRAME_SIZE)).collect(),
            tx_pending: 0,
            to_fill: (0..RING).map(|f| u64::from(f * FRAME_SIZE)).collect(),
            ifindex,
            queue,
        };
        // The kernel may only receive into frames it was given: all RX frames, before binding.
        xsk.refill();
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let sa_len =
            libc::socklen_t::try_from(size_of::<libc::sockaddr_xdp>()).map_err(io::Error::other)?;
        // SAFETY: `sa` is a valid sockaddr_xdp of `sa_len` bytes.
        let rc = unsafe { libc::bind(xsk.fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), sa_len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(xsk)
    }

    /// Turns on preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` =
    /// [`BUSY_POLL_USECS`], `SO_BUSY_POLL_BUDGET` = `budget`): [`Xsk::poll_napi`] then runs the
    /// interface queue's NAPI poll in the caller's thread, and with the interface's
    /// `napi_defer_hard_irqs` and `gro_flush_timeout` set the kernel leaves the queue to those
    /// polls instead of scheduling NAPI per packet (`Documentation/networking/napi.rst`,
    /// "Preferred busy polling"). Needs `CAP_NET_ADMIN`.
    pub fn set_busy_poll(&self, budget: u16) -> io::Result<()> {
        let on: libc::c_int = 1;
        let usecs = libc::c_int::try_from(BUSY_POLL_USECS).map_err(io::Error::other)?;
        let budget = libc::c_int::from(budget);
        let fd = self.fd.as_fd();
        setsockopt_at(fd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, &on)?;
        setsockopt_at(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &usecs)?;
        setsockopt_at(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL_BUDGET, &budget)
    }

    /// The socket's busy-polling options and NAPI id, read back from the kernel.
    pub fn busy_poll(&self) -> io::Result<BusyPoll> {
        let fd = self.fd.as_fd();
        let get = |name| getsockopt_int(fd, name).map(|v| u32::try_from(v).unwrap_or(0));
        Ok(BusyPoll {
            prefer: get(libc::SO_PREFER_BUSY_POLL)? != 0,
            usecs: get(libc::SO_BUSY_POLL)?,
            napi_id: get(libc::SO_INCOMING_NAPI_ID)?,
        })
    }

    /// One non-blocking receive call: with busy polling on (and a NAPI id known), the kernel
    /// runs the queue's NAPI poll here, which moves the frames waiting in the device onto the
    /// RX ring (`xsk_recvmsg`); otherwise it does nothing. The frames are then read with
    /// [`Xsk::receive`].
    pub fn poll_napi(&self) -> io::Result<()> {
        // SAFETY: a zero-length receive into no buffer on our socket; the kernel writes
        // nothing (AF_XDP delivers frames through the RX ring, never through recv).
        let rc = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The interface it is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The RX queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Takes up to `out.len()` received frames off the RX ring; returns how many. Each must be
    /// given back with [`Xsk::recycle`] once read.
    pub fn receive(&mut self, out: &mut [Rx]) -> usize {
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let prod = self.rx.producer().load(Ordering::Acquire);
        let n = (ready(prod, cons) as usize).min(out.len());
        for (k, o) in out.iter_mut().take(n).enumerate() {
            // `k < n <= RING`, so the cast is exact.
            let d = self.rx.read(cons.wrapping_add(k as u32));
            *o = Rx {
                addr: d.addr,
                len: d.len,
            };
        }
        // The descriptors are copied out: the kernel may reuse their slots.
        self.rx
            .consumer()
            .store(cons.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// The bytes of a received frame; empty if the kernel's descriptor is out of range.
    pub fn frame(&self, rx: Rx) -> &[u8] {
        let Some(range) = self.range(rx.addr, rx.len as usize) else {
            return &[];
        };
        let p = self.umem.as_ptr().wrapping_add(range.start);
        // SAFETY: `range` lies inside the UMEM, so `p` and the `range.len()` bytes after it do;
        // the frame is ours (taken off the RX ring and not yet recycled), so the kernel does
        // not write it meanwhile.
        unsafe { std::slice::from_raw_parts(p, range.len()) }
    }

    fn range(&self, addr: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len)?;
        // A frame never spans two chunks.
        let chunk_end = (start / FRAME_SIZE as usize + 1) * FRAME_SIZE as usize;
        (end <= self.umem_len && end <= chunk_end).then_some(start..end)
    }

    /// Gives a frame from [`Xsk::receive`] back for receiving (queued; the fill ring is
    /// replenished by [`Xsk::refill`]).
    pub fn recycle(&mut self, rx: Rx) {
        // Back to the start of its chunk (the kernel reports the packet's address).
        let chunk = rx.addr - rx.addr % u64::from(FRAME_SIZE);
        self.to_fill.push(chunk);
    }

    /// Hands the recycled RX frames to the kernel.
    pub fn refill(&mut self) {
        let prod = self.fill.producer().load(Ordering::Relaxed);
        let cons = self.fill.consumer().load(Ordering::Acquire);
        let n = (free(prod, cons, self.fill.size) as usize).min(self.to_fill.len());
        for k in 0..n {
            let Some(addr) = self.to_fill.pop() else {
                break;
            };
            self.fill.write(prod.wrapping_add(k as u32), addr);
        }
        self.fill
            .producer()
            .store(prod.wrapping_add(n as u32), Ordering::Release);
    }

    /// Takes back the TX frames the kernel has sent.
    fn reclaim(&mut self) {
        let cons = self.completion.consumer().load(Ordering::Relaxed);
        let prod = self.completion.producer().load(Ordering::Acquire);
        let n = ready(prod, cons);
        for k in 0..n {
            let addr = self.completion.read(cons.wrapping_add(k));
            self.tx_free.push(addr - addr % u64::from(FRAME_SIZE));
        }
        self.completion
            .consumer()
            .store(cons.wrapping_add(n), Ordering::Release);
    }

    /// Lends a free TX frame to `fill`, which writes a frame into it and returns its length
    /// (`None`: nothing to send, the frame stays free); queues it on the TX ring. Returns
    /// whether a frame was queued; `false` also when every TX frame is in flight.
    pub fn transmit(&mut self, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        let Some(addr) = self.tx_free.pop() else {
            return false;
        };
        let Some(range) = self.range(addr, FRAME_SIZE as usize) else {
            return false;
        };
        let p = self.umem.as_ptr().wrapping_add(range.start);
        // SAFETY: `range` lies inside the UMEM, and the frame is on no ring (taken off the free
        // list), so nothing else reads or writes it while the slice lives.
        let buf = unsafe { std::slice::from_raw_parts_mut(p, range.len()) };
        let Some(len) = fill(buf).filter(|&l| l <= FRAME_SIZE as usize) else {
            self.tx_free.push(addr);
            return false;
        };
        let prod = self.tx.producer().load(Ordering::Relaxed);
        // Cannot be full: the ring has as many entries as there are TX frames.
        self.tx.write(
            prod.wrapping_add(self.tx_pending),
            libc::xdp_desc {
                addr,
                // `len <= FRAME_SIZE`.
                len: len as u32,
                options: 0,
            },
        );
        self.tx_pending += 1;
        true
    }

    /// Frames on the TX ring that the kernel has not taken yet (published, not consumed).
    pub fn tx_queued(&self) -> u32 {
        let cons = self.tx.consumer().load(Ordering::Acquire);
        let prod = self.tx.producer().load(Ordering::Relaxed);
        ready(prod, cons)
    }

    /// Publishes the queued TX descriptors and asks the kernel to send them (copy mode sends
    /// only on a system call). Returns whether there was anything to send.
    pub fn kick(&mut self) -> io::Result<bool> {
        self.kick_beyond(0)
    }

    /// Publishes the queued TX descriptors and asks the kernel to send all but the last
    /// `keep` of them, which [`sleep_sending`] sends on the way into the relay's sleep: the
    /// NAPI thread that the send wakes then runs while the relay sleeps instead of preempting
    /// it on the way out of `sendto` (`bench/results/media-srtp-2026-12-05-wakeups.md`).
    /// Returns whether there was anything to send.
    pub fn kick_beyond(&mut self, keep: u32) -> io::Result<bool> {
        if self.tx_pending == 0 && self.tx_queued() <= keep {
            return Ok(false);
        }
        let prod = self.tx.producer().load(Ordering::Relaxed);
        self.tx
            .producer()
            .store(prod.wrapping_add(self.tx_pending), Ordering::Release);
        self.tx_pending = 0;
        // Copy mode sends at most 32 frames per call (the kernel's TX batch) and says EAGAIN
        // when more wait: call again until at most `keep` are left, bounded in case the device
        // queue is full (then the frames go with the next kick).
        for _ in 0..KICKS {
            if self.tx_queued() <= keep {
                break;
            }
            // SAFETY: a zero-length send on our socket; no buffers are passed.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                // EBUSY/ENOBUFS: the device is busy; the frames stay queued for the next kick.
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS)
                ) {
                    return Err(e);
                }
            }
        }
        self.reclaim();
        Ok(true)
    }
}

/// Sleeps `timeout` in one `ppoll` on the sockets of `socks` that have frames on their TX
/// ring: in copy mode the kernel's poll sends up to one TX batch ([`POLL_SENDS`]) of each
/// before the thread sleeps (`xsk_poll`: "Poll needs to drive Tx also in copy mode"). That
/// replaces a `sendto` per wake-up, and the NAPI thread the send wakes runs while this thread
/// sleeps rather than preempting it on the way out of `sendto` and switching back. No events
/// are asked for, so received frames do not cut the sleep short (the relay's polling interval
/// stays what it was). Whatever is still queued afterwards (more than a batch, or a kernel
/// whose poll does not send) is kicked with `sendto`; returns how many sockets needed that.
pub fn sleep_sending(socks: &mut [Xsk], timeout: std::time::Duration) -> io::Result<usize> {
    let mut fds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; POLL_FDS];
    let mut n = 0;
    for s in socks.iter_mut() {
        if s.tx_queued() == 0 {
            continue;
        }
        match fds.get_mut(n) {
            Some(p) => {
                p.fd = s.fd.as_raw_fd();
                n += 1;
            }
            // More sockets with frames than the poll set holds: those go now.
            None => {
                s.kick()?;
            }
        }
    }
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // `n <= POLL_FDS`, a small constant.
    let nfds = n as libc::nfds_t;
    // SAFETY: `fds` holds `POLL_FDS >= n` initialised entries that the kernel may write
    // (`revents`) during the call; `ts` lives across it; a null signal mask leaves it as is.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), nfds, &raw const ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // A signal cut the sleep short: the relay looks at its rings early, no harm.
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let mut kicked = 0;
    for s in socks.iter_mut() {
        if s.tx_queued() > 0 {
            s.kick()?;
            kicked += 1;
        }
    }
    Ok(kicked)
}

impl AsFd for Xsk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The hardware address of interface `ifindex`.
pub fn hw_addr(ifindex: u32) -> io::Result<[u8; 6]> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has IF_NAMESIZE bytes, as if_indextoname requires.
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid ifreq (a C struct of arrays and a union of plain data).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = name;
    // SAFETY: SIOCGIFHWADDR reads `ifr_name` and writes the union of `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data) {
        // `sa_data` is `c_char`; the bytes are the address.
        *m = d as u8;
    }
    Ok(mac)
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// RX queues of the interface `name` (from sysfs; 1 if unknown).
pub fn rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_indexes_wrap_around_u32() {
        assert_eq!(ready(5, 3), 2);
        assert_eq!(ready(2, u32::MAX - 1), 4);
        assert_eq!(free(2, u32::MAX - 1, 8), 4);
        assert_eq!(free(10, 2, 8), 0);
        // A consumer never runs ahead of the producer; if a buggy peer says so, nothing is
        // free rather than a wrapped huge count.
        assert_eq!(free(1, 2, 8), 0);
        assert_eq!(slot(u32::MAX, 8), 7);
        assert_eq!(slot(u32::MAX.wrapping_add(1), 8), 0);
        assert_eq!(slot(13, RING), 13);
    }

    /// `set_busy_poll` sets the three options on the socket itself: the kernel reads them back
    /// (a fresh socket has them off). Binds to `lo` in copy mode, which needs root; skipped
    /// otherwise. No program redirects to it, so it receives nothing and has no NAPI id.
    #[test]
    fn busy_poll_options_read_back_from_the_kernel() {
        let lo = match ifindex("lo").and_then(|i| Xsk::open(i, 0)) {
            Ok(s) => s,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                eprintln!("skipped: AF_XDP needs root ({e})");
                return;
            }
            Err(e) => panic!("AF_XDP socket on lo: {e}"),
        };
        let before = lo.busy_poll().expect("getsockopt");
        assert_eq!((before.prefer, before.usecs), (false, 0), "{before:?}");
        assert!(!before.engaged());
        lo.set_busy_poll(48).expect("setsockopt");
        let after = lo.busy_poll().expect("getsockopt");
        assert_eq!(
            (after.prefer, after.usecs, after.napi_id),
            (true, BUSY_POLL_USECS, 0),
            "{after:?}"
        );
        // Nothing received: no NAPI context to poll yet, so not engaged, and the poll call is
        // a harmless no-op.
        assert!(!after.engaged());
        lo.poll_napi().expect("non-blocking receive");
    }

    #[test]
    fn frames_split_evenly_between_rx_and_tx() {
        assert!(RING.is_power_of_two());
        assert_eq!(RING * 2, FRAMES);
        assert!(FRAME_SIZE.is_power_of_two());
    }
}
