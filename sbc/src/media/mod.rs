//! Media relay: the XDP fast path loader (and, as it grows, port pool, latching and the
//! userspace relay).

pub mod xdp;
