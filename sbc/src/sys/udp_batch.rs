//! Batched UDP I/O for the userspace relay: `recvmmsg(2)` fills many datagrams, and
//! `sendmmsg(2)` sends many, in one system call each. Buffers are allocated once per thread
//! ([`Batch`]), never per packet.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::RawFd,
};

/// Datagrams moved per system call (and per wake-up of a socket before other sockets get a
/// turn).
pub const BATCH: usize = 32;
/// Largest datagram relayed; longer ones arrive truncated (`MSG_TRUNC`) and are dropped.
pub const MAX_DATAGRAM: usize = 2048;
/// Spare bytes behind every buffer for a transform that lengthens a datagram in place (the
/// SRTP trailer: `sbc_proto::media::crypto::HEADROOM`).
pub const HEADROOM: usize = sbc_proto::media::crypto::HEADROOM;

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// Payload bytes (the first `len` are valid); a transform may rewrite them in place and
    /// change `len` up to [`MAX_DATAGRAM`] + [`HEADROOM`]. Receives fill at most
    /// [`MAX_DATAGRAM`].
    pub buf: [u8; MAX_DATAGRAM + HEADROOM],
    /// Valid bytes in `buf`.
    pub len: usize,
    /// Sender.
    pub src: SocketAddr,
    /// Where to send it on, once decided (`None`: dropped).
    pub dst: Option<SocketAddr>,
    /// Which of the other leg's sockets sends it (0 RTP, 1 RTCP).
    pub out: usize,
}

/// [`BATCH`] datagram buffers, reused for every system call.
#[derive(Debug)]
pub struct Batch {
    /// The datagrams; the first `n` of the last [`recv`] are valid.
    pub packets: Box<[Datagram; BATCH]>,
    /// Whether the last [`recv`] emptied the socket's queue (it returned fewer datagrams
    /// than asked for, truncated ones included): the caller need not ask again until the
    /// socket is readable anew.
    pub drained: bool,
}

impl Default for Datagram {
    fn default() -> Self {
        Self {
            buf: [0; MAX_DATAGRAM + HEADROOM],
            len: 0,
            src: SocketAddr::from(([0, 0, 0, 0], 0)),
            dst: None,
            out: 0,
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            packets: Box::new([Datagram::default(); BATCH]),
            drained: false,
        }
    }
}

/// An all-zero socket address buffer for the kernel to fill.
pub(crate) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero bytes are a valid (AF_UNSPEC) value.
    unsafe { MaybeUninit::<libc::sockaddr_storage>::zeroed().assume_init() }
}

/// Receives up to [`BATCH`] datagrams from the non-blocking socket `fd` into `batch`; returns
/// how many (an error of kind `WouldBlock` when none is queued) and sets
/// [`Batch::drained`]. Truncated datagrams are skipped.
pub fn recv(fd: RawFd, batch: &mut Batch) -> io::Result<usize> {
    let (kept, drained) = recv_into(fd, &mut batch.packets[..])?;
    batch.drained = drained;
    Ok(kept)
}

/// Receives up to `packets.len()` (at most [`BATCH`]) datagrams from the non-blocking socket
/// `fd` into `packets`; returns how many were kept (truncated datagrams are skipped) and
/// whether the socket's queue was emptied (fewer came than asked for). An error of kind
/// `WouldBlock` when none is queued. The relay workers fill one arena from many sockets this
/// way, so one decision pass serves them all.
pub fn recv_into(fd: RawFd, packets: &mut [Datagram]) -> io::Result<(usize, bool)> {
    let want = packets.len().min(BATCH);
    let mut names = [zeroed_storage(); BATCH];
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    });
    // SAFETY: mmsghdr is plain old data; zero is a valid initial value for every field.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    for (i, p) in packets.iter_mut().enumerate().take(want) {
        iovs[i].iov_base = p.buf.as_mut_ptr().cast();
        iovs[i].iov_len = MAX_DATAGRAM;
        msgs[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `want` msghdrs point at a live iovec over a MAX_DATAGRAM buffer of
    // `packets` and at a live sockaddr_storage of `names`, all outliving the call; vlen is
    // `want`, at most the arrays' length.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            want as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0);
    // Non-blocking, recvmmsg returns what is queued, up to the batch.
    let drained = n < want;
    let mut kept = 0;
    for (i, (msg, name)) in msgs.iter().zip(&names).enumerate().take(n) {
        let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let Some(src) = socket_addr(name) else {
            continue;
        };
        if truncated {
            continue;
        }
        let len = msg.msg_len as usize;
        if kept != i {
            // Compact: a skipped datagram leaves a gap (rare; copies one buffer).
            let (head, tail) = packets.split_at_mut(i);
            head[kept].buf[..len].copy_from_slice(&tail[0].buf[..len]);
        }
        let p = &mut packets[kept];
        p.len = len;
        p.src = src;
        p.dst = None;
        p.out = 0;
        kept += 1;
    }
    Ok((kept, drained))
}

/// Sends `packets` (each to its `dst`; those without one are skipped) from the non-blocking
/// socket `fd`, [`BATCH`] per system call. Returns how many were sent; stops at the first
/// error (`WouldBlock` when the socket buffer is full), which is returned if nothing was sent.
pub fn send<'a>(fd: RawFd, packets: impl Iterator<Item = &'a Datagram>) -> io::Result<usize> {
    let mut names = [zeroed_storage(); BATCH];
    let mut lens: [libc::socklen_t; BATCH] = [0; BATCH];
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    });
    let mut sent = 0;
    let mut packets = packets.filter_map(|p| Some((p, p.dst?))).peekable();
    while packets.peek().is_some() {
        let mut n = 0;
        while n < BATCH {
            let Some((p, dst)) = packets.next() else {
                break;
            };
            lens[n] = write_addr(dst, &mut names[n]);
            // The kernel only reads through iov_base for a send.
            iovs[n].iov_base = p.buf.as_ptr().cast_mut().cast();
            iovs[n].iov_len = p.len;
            n += 1;
        }
        // SAFETY: mmsghdr is plain old data; zero is a valid initial value for every field.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for (i, msg) in msgs.iter_mut().enumerate().take(n) {
            msg.msg_hdr.msg_name = (&raw mut names[i]).cast();
            msg.msg_hdr.msg_namelen = lens[i];
            msg.msg_hdr.msg_iov = &raw mut iovs[i];
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `n` msghdrs point at live iovecs over live packet buffers and at
        // initialised addresses of `lens[i]` bytes, all outliving the call.
        let r =
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if sent == 0 { Err(e) } else { Ok(sent) };
        }
        let r = usize::try_from(r).unwrap_or(0);
        sent += r;
        if r < n {
            break;
        }
    }
    Ok(sent)
}

/// The IP address and port the kernel wrote into `s` (`None`: not IPv4 or IPv6).
pub(crate) fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into this storage, which
            // is large and aligned enough for it.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into this storage,
            // which is large and aligned enough for it.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn write_addr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in, and every
            // field is written before the kernel reads it.
            let s = unsafe { &mut *std::ptr::from_mut(out).cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            s.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6, and
            // every field is written before the kernel reads it.
            let s = unsafe { &mut *std::ptr::from_mut(out).cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            s.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd as _};

    use super::*;

    #[test]
    fn moves_many_datagrams_per_call_both_families() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(rx) = UdpSocket::bind(local) else {
                continue; // no IPv6 loopback in this sandbox
            };
            let tx = UdpSocket::bind(local).expect("bind");
            rx.set_nonblocking(true).expect("nonblocking");
            let to = rx.local_addr().expect("addr");
            let mut batch = Batch::default();
            assert_eq!(
                recv(rx.as_raw_fd(), &mut batch).map_err(|e| e.kind()),
                Err(io::ErrorKind::WouldBlock)
            );
            let mut out = Batch::default();
            for (i, p) in out.packets.iter_mut().enumerate().take(40.min(BATCH)) {
                p.len = 100 + i;
                p.buf[0] = u8::try_from(i).expect("small");
                p.dst = Some(to);
            }
            let sent = send(tx.as_raw_fd(), out.packets.iter()).expect("send");
            assert_eq!(sent, BATCH);
            let n = recv(rx.as_raw_fd(), &mut batch).expect("recv");
            assert_eq!(n, BATCH);
            assert!(!batch.drained, "a full batch may leave more queued");
            let sent = send(tx.as_raw_fd(), out.packets.iter().take(3)).expect("send");
            assert_eq!(sent, 3);
            assert_eq!(recv(rx.as_raw_fd(), &mut batch).expect("recv"), 3);
            assert!(batch.drained, "a short batch emptied the queue");
            for (i, p) in batch.packets.iter().enumerate() {
                assert_eq!((p.len, usize::from(p.buf[0])), (100 + i, i));
                assert_eq!(p.src, tx.local_addr().expect("addr"));
            }
        }
    }
}
