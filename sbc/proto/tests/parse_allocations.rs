//! Heap allocations per parsed message: at most one (the header index), for the messages of
//! every call (INVITE with SDP, 180, 200 with SDP, ACK, BYE), and none more for the typed
//! access the transaction and dialog layers do on each of them (issue 16). Counted by a global
//! allocator that counts per thread, so other tests in this binary cannot disturb the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use sbc_proto::sip::{Limits, Message};

struct PerThreadCounting;

thread_local! {
    // `const` and destructor-free: usable from inside the allocator without allocating.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: during thread teardown the slot may be gone; such allocations are not ours.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is upheld by `System`; counting touches no heap memory.
unsafe impl GlobalAlloc for PerThreadCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout, which satisfies `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr`/`layout` come from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PerThreadCounting = PerThreadCounting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const SDP: &str = "v=0\r\no=- 3912 3912 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 40012 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

const COMMON: &str = "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---7a5cd1e4f3e2;rport\r\n\
    From: \"Reception\" <sip:1001@pbx.example.com>;tag=9fb2d4a1\r\n\
    Call-ID: 6a1f0c2e9b3d4f5a@192.168.1.20\r\n";

fn messages() -> Vec<(&'static str, String)> {
    let invite = format!(
        "INVITE sip:+4930123456@trunk.carrier.example SIP/2.0\r\n{COMMON}\
         Max-Forwards: 70\r\nRoute: <sip:edge1.carrier.example;lr>\r\n\
         Contact: <sip:1001@192.168.1.20:5060;transport=udp>\r\n\
         To: <sip:+4930123456@trunk.carrier.example>\r\nCSeq: 1 INVITE\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, UPDATE, PRACK\r\n\
         Supported: replaces, timer, 100rel\r\nSession-Expires: 1800;refresher=uac\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let to = "To: <sip:+4930123456@trunk.carrier.example>;tag=as5f1c2d3e\r\n";
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\n{COMMON}{to}Record-Route: <sip:edge1.carrier.example;lr>\r\n\
         Contact: <sip:+4930123456@198.51.100.7:5060>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let ok = format!(
        "SIP/2.0 200 OK\r\n{COMMON}{to}Record-Route: <sip:edge1.carrier.example;lr>\r\n\
         Contact: <sip:+4930123456@198.51.100.7:5060>\r\nCSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let ack = format!(
        "ACK sip:+4930123456@198.51.100.7:5060 SIP/2.0\r\n{COMMON}{to}Max-Forwards: 70\r\n\
         Route: <sip:edge1.carrier.example;lr>\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    let bye = format!(
        "BYE sip:+4930123456@198.51.100.7:5060 SIP/2.0\r\n{COMMON}{to}Max-Forwards: 70\r\n\
         Route: <sip:edge1.carrier.example;lr>\r\nCSeq: 2 BYE\r\n\
         Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\nContent-Length: 0\r\n\r\n"
    );
    vec![
        ("INVITE", invite),
        ("180", ringing),
        ("200", ok),
        ("ACK", ack),
        ("BYE", bye),
    ]
}

/// What the transaction and dialog layers read from every message.
fn access(m: &Message) -> usize {
    let mut n = m.top_branch().map_or(0, str::len);
    n += m.via().filter_map(Result::ok).count();
    n += m.from_tag().map_or(0, str::len) + m.to_tag().map_or(0, str::len);
    n += m.from().uri_str.len() + m.to().uri_str.len();
    n += m.call_id().len() + m.cseq().seq as usize;
    n += m
        .routes()
        .chain(m.record_routes())
        .filter_map(Result::ok)
        .count();
    n += m.contacts().filter_map(Result::ok).count();
    n + m.body().len()
}

#[test]
fn at_most_one_allocation_per_message_parsed_and_read() {
    let limits = Limits::default();
    for (name, text) in messages() {
        // Shared once, as the receive path hands it over: clones are then reference counts.
        let buf = Bytes::from(text.into_bytes());
        let _ = buf.clone();
        let before = allocations();
        let m = Message::parse(buf.clone(), &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = allocations() - before;
        let n = access(&m);
        let total = allocations() - before;
        drop(m);
        assert!(n > 0, "{name}: nothing was read");
        assert!(parsed <= 1, "{name}: {parsed} allocations to parse");
        assert!(total <= 1, "{name}: {total} allocations to parse and read");
    }
}
