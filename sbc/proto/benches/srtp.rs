//! SRTP transform cost per packet, as the relay runs it: RTP→SRTP (protect) and SRTP→SRTP
//! (unprotect with one leg's key, protect with the other's) for each suite, on 20 ms PCMU
//! packets (12 + 160 bytes), plus heap allocations per packet (a counting global allocator:
//! the relay path must not allocate).
//!
//! Run with `cargo bench -p sbc-proto --bench srtp`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sbc_proto::b2bua::Rng;
use sbc_proto::srtp::{MasterKey, SrtpContext, Suite};

/// Counts allocations.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is upheld by `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout as the caller's, which satisfies `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (i.e. `System`) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PACKETS: u32 = 200_000;

fn packet(seq: u16, buf: &mut [u8; 256]) -> usize {
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    buf[12..172].fill(0xd5);
    172
}

#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark measures wall-clock time"
)]
fn main() {
    let mut rng = Rng::from_test_seed(1);
    println!("suite                      RTP->SRTP us/pkt  SRTP->SRTP us/pkt  allocs/pkt");
    for suite in Suite::ALL {
        let a = MasterKey::generate(suite, &mut rng);
        let b = MasterKey::generate(suite, &mut rng);
        let mut buf = [0u8; 256];

        let mut tx = SrtpContext::new(suite, &a, None);
        let allocs = ALLOCS.load(Ordering::Relaxed);
        let t = Instant::now();
        for i in 0..PACKETS {
            let n = packet(i as u16, &mut buf);
            black_box(tx.protect_rtp(&mut buf, n).expect("protect"));
        }
        let plain = t.elapsed().as_secs_f64() * 1e6 / f64::from(PACKETS);
        let a1 = ALLOCS.load(Ordering::Relaxed) - allocs;

        // Pre-protect with the peer's key, then time unprotect + protect with ours.
        let mut peer = SrtpContext::new(suite, &a, None);
        let mut rx = SrtpContext::new(suite, &a, None);
        let mut out = SrtpContext::new(suite, &b, None);
        let mut wire = Vec::with_capacity(PACKETS as usize);
        for i in 0..PACKETS {
            let n = packet(i as u16, &mut buf);
            let m = peer.protect_rtp(&mut buf, n).expect("protect");
            wire.push((buf, m));
        }
        let allocs = ALLOCS.load(Ordering::Relaxed);
        let t = Instant::now();
        for (p, m) in &mut wire {
            let n = rx.unprotect_rtp(&mut p[..*m]).expect("unprotect");
            black_box(out.protect_rtp(p, n).expect("protect"));
        }
        let both = t.elapsed().as_secs_f64() * 1e6 / f64::from(PACKETS);
        let a2 = ALLOCS.load(Ordering::Relaxed) - allocs;
        println!(
            "{:<26} {plain:>16.3} {both:>18.3} {:>11.3}",
            suite.name(),
            (a1 + a2) as f64 / f64::from(2 * PACKETS)
        );
    }
}
