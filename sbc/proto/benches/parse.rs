//! Parser benchmark: sbc-proto against rsip (reference) on a small corpus of typical trunk
//! messages, plus heap allocations per message counted by a wrapping global allocator.
//!
//! Run with `cargo bench -p sbc-proto --bench parse`. It prints a summary (allocations per
//! message and throughput ratios from an interleaved A/B timing loop), then the Criterion
//! groups `parse`, `parse+access` and `parse+edit+serialize`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use rsip::prelude::*;
use sbc_proto::sip::{Editor, HeaderName, Limits, Message};

/// Counts allocations (not frees or bytes): the figure the target is about.
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
        // SAFETY: `ptr` was returned by `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr`/`layout` come from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SDP_OFFER: &str = "v=0\r\no=- 3912 3912 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 40012 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";
const SDP_ANSWER: &str = "v=0\r\no=carrier 8121 8122 IN IP4 203.0.113.50\r\ns=-\r\nc=IN IP4 203.0.113.50\r\nt=0 0\r\nm=audio 31000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

fn with_body(head: &str, body: &str) -> String {
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())
}

fn corpus() -> Vec<(&'static str, Bytes)> {
    let invite = with_body(
        "INVITE sip:+4930123456@trunk.carrier.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---7a5cd1e4f3e2;rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:edge1.carrier.example;lr>\r\n\
         Contact: <sip:1001@192.168.1.20:5060;transport=udp>\r\n\
         To: <sip:+4930123456@trunk.carrier.example>\r\n\
         From: \"Reception\" <sip:1001@pbx.example.com>;tag=9fb2d4a1\r\n\
         Call-ID: 6a1f0c2e9b3d4f5a@192.168.1.20\r\n\
         CSeq: 1 INVITE\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, UPDATE, PRACK\r\n\
         Supported: replaces, timer, 100rel\r\n\
         Session-Expires: 1800;refresher=uac\r\n\
         Min-SE: 90\r\n\
         User-Agent: ExamplePBX 18.2\r\n\
         Content-Type: application/sdp\r\n",
        SDP_OFFER,
    );
    let ringing = "SIP/2.0 180 Ringing\r\n\
         Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---7a5cd1e4f3e2;rport=5060;received=192.168.1.20\r\n\
         Record-Route: <sip:edge1.carrier.example;lr>\r\n\
         Contact: <sip:+4930123456@198.51.100.7:5060>\r\n\
         To: <sip:+4930123456@trunk.carrier.example>;tag=as5f1c2d3e\r\n\
         From: \"Reception\" <sip:1001@pbx.example.com>;tag=9fb2d4a1\r\n\
         Call-ID: 6a1f0c2e9b3d4f5a@192.168.1.20\r\n\
         CSeq: 1 INVITE\r\n\
         Server: CarrierSBC\r\n\
         Content-Length: 0\r\n\r\n"
        .to_owned();
    let ok = with_body(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---7a5cd1e4f3e2;rport=5060;received=192.168.1.20\r\n\
         Record-Route: <sip:edge1.carrier.example;lr>\r\n\
         Contact: <sip:+4930123456@198.51.100.7:5060>\r\n\
         To: <sip:+4930123456@trunk.carrier.example>;tag=as5f1c2d3e\r\n\
         From: \"Reception\" <sip:1001@pbx.example.com>;tag=9fb2d4a1\r\n\
         Call-ID: 6a1f0c2e9b3d4f5a@192.168.1.20\r\n\
         CSeq: 1 INVITE\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
         Supported: replaces, timer\r\n\
         Session-Expires: 1800;refresher=uac\r\n\
         Require: timer\r\n\
         Content-Type: application/sdp\r\n",
        SDP_ANSWER,
    );
    let ack = "ACK sip:+4930123456@198.51.100.7:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---a7c3e9d1b2f4;rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:edge1.carrier.example;lr>\r\n\
         To: <sip:+4930123456@trunk.carrier.example>;tag=as5f1c2d3e\r\n\
         From: \"Reception\" <sip:1001@pbx.example.com>;tag=9fb2d4a1\r\n\
         Call-ID: 6a1f0c2e9b3d4f5a@192.168.1.20\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
        .to_owned();
    let bye = "BYE sip:+4930123456@198.51.100.7:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---c4d2e6f8a1b3;rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:edge1.carrier.example;lr>\r\n\
         To: <sip:+4930123456@trunk.carrier.example>;tag=as5f1c2d3e\r\n\
         From: \"Reception\" <sip:1001@pbx.example.com>;tag=9fb2d4a1\r\n\
         Call-ID: 6a1f0c2e9b3d4f5a@192.168.1.20\r\n\
         CSeq: 2 BYE\r\n\
         Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\n\
         Content-Length: 0\r\n\r\n"
        .to_owned();
    let register = "REGISTER sip:registrar.carrier.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-77f2a1c9d3e5;rport\r\n\
         Max-Forwards: 70\r\n\
         Contact: <sip:4930123000@203.0.113.10:5060>;expires=3600\r\n\
         To: <sip:4930123000@registrar.carrier.example>\r\n\
         From: <sip:4930123000@registrar.carrier.example>;tag=3c1e5a7b\r\n\
         Call-ID: 1b9d3f5e7a2c4e6f@203.0.113.10\r\n\
         CSeq: 2 REGISTER\r\n\
         Authorization: Digest username=\"4930123000\", realm=\"carrier.example\", nonce=\"5f2a8c1e9d3b7f4a6c0e2d8b1a3f5c7e\", uri=\"sip:registrar.carrier.example\", response=\"0a4f113b8c2e7d5f9a1b3c6e8d0f2a4b\", algorithm=MD5, cnonce=\"e7b1d3f5\", qop=auth, nc=00000001\r\n\
         Expires: 3600\r\n\
         User-Agent: ExampleSBC 0.1\r\n\
         Content-Length: 0\r\n\r\n"
        .to_owned();
    let options = "OPTIONS sip:trunk.carrier.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-0c2e4a6b8d1f;rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:trunk.carrier.example>\r\n\
         From: <sip:ping@203.0.113.10>;tag=8e0a2c4d\r\n\
         Call-ID: 4d6f8a0c2e1b3d5f@203.0.113.10\r\n\
         CSeq: 102 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
        .to_owned();
    [
        ("INVITE+SDP", invite),
        ("180", ringing),
        ("200+SDP", ok),
        ("ACK", ack),
        ("BYE", bye),
        ("REGISTER+auth", register),
        ("OPTIONS", options),
    ]
    .into_iter()
    .map(|(n, s)| {
        // Promote the buffer to shared once, as a receive path holding `BytesMut` chunks
        // would: later clones are then reference-count increments, not allocations.
        let b = Bytes::from(s.into_bytes());
        let _ = b.clone();
        (n, b)
    })
    .collect()
}

fn ours_parse(buf: &Bytes) -> usize {
    match Message::parse(buf.clone(), &Limits::default()) {
        Ok(m) => m.headers().len(),
        Err(_) => 0,
    }
}

fn ours_access(buf: &Bytes) -> usize {
    let Ok(m) = Message::parse(buf.clone(), &Limits::default()) else {
        return 0;
    };
    let mut n = 0;
    for v in m.via() {
        n += v.map_or(0, |v| v.branch().map_or(0, str::len));
    }
    // The tags as the B2BUA reads them: kept by the parser while it checked From and To.
    n += m.from_tag().map_or(0, str::len);
    n += m.to_tag().map_or(0, str::len);
    n += m.call_id().len();
    n += m.cseq().seq as usize;
    n += m.routes().filter_map(Result::ok).count();
    n += m.contacts().filter_map(Result::ok).count();
    n
}

fn ours_edit(buf: &Bytes, out: &mut Vec<u8>) -> usize {
    let Ok(m) = Message::parse(buf.clone(), &Limits::default()) else {
        return 0;
    };
    let top = m.headers().positions(HeaderName::Via).next().unwrap_or(0);
    let mut e = Editor::new(&m);
    e.set_param(top, "received", Some("198.51.100.99".into()))
        .insert_before(
            top,
            "Via",
            &b"SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-sbc-1"[..],
        )
        .insert_before(top, "Record-Route", &b"<sip:203.0.113.1;lr>"[..]);
    e.write(out);
    out.len()
}

fn rsip_parse(buf: &Bytes) -> usize {
    match rsip::SipMessage::try_from(&buf[..]) {
        Ok(m) => m.headers().iter().count(),
        Err(_) => 0,
    }
}

fn rsip_access(buf: &Bytes) -> usize {
    let Ok(m) = rsip::SipMessage::try_from(&buf[..]) else {
        return 0;
    };
    let mut n = 0;
    for h in m.headers().iter() {
        match h {
            rsip::Header::Via(v) => {
                n += v
                    .typed()
                    .ok()
                    .and_then(|v| v.branch().map(|b| b.to_string().len()))
                    .unwrap_or(0);
            }
            rsip::Header::Route(r) => n += r.typed().map_or(0, |r| r.uris().len()),
            rsip::Header::Contact(c) => n += usize::from(c.typed().is_ok()),
            _ => {}
        }
    }
    n += m
        .from_header()
        .ok()
        .and_then(|f| f.tag().ok().flatten())
        .map_or(0, |t| t.to_string().len());
    n += m
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .map_or(0, |t| t.to_string().len());
    n += m.call_id_header().map_or(0, |c| c.value().len());
    n += m.cseq_header().ok().and_then(|c| c.seq().ok()).unwrap_or(0) as usize;
    n
}

fn rsip_edit(buf: &Bytes) -> usize {
    let Ok(mut m) = rsip::SipMessage::try_from(&buf[..]) else {
        return 0;
    };
    // rsip has no in-place parameter edit on the untyped Via; the closest equivalent work is
    // adding the two fields and re-serialising the whole message.
    m.headers_mut()
        .push(rsip::Header::Via(rsip::headers::Via::new(
            "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-sbc-1",
        )));
    m.headers_mut()
        .push(rsip::Header::RecordRoute(rsip::headers::RecordRoute::new(
            "<sip:203.0.113.1;lr>",
        )));
    m.to_string().len()
}

fn allocs_per_message(corpus: &[(&str, Bytes)], mut f: impl FnMut(&Bytes) -> usize) -> f64 {
    // Warm up once so one-time allocations (e.g. lazy statics) are not counted.
    for (_, b) in corpus {
        black_box(f(b));
    }
    let rounds = 100u64;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        for (_, b) in corpus {
            black_box(f(b));
        }
    }
    let total = ALLOCS.load(Ordering::Relaxed) - before;
    total as f64 / (rounds * corpus.len() as u64) as f64
}

/// Nanoseconds this thread has run on a CPU (first field of `/proc/thread-self/schedstat`):
/// unlike wall-clock time it does not grow while other jobs on a shared machine hold the CPU.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Messages per second of this thread's CPU time (wall-clock time where schedstat is absent).
#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark measures elapsed time"
)]
fn messages_per_second(corpus: &[(&str, Bytes)], f: &mut dyn FnMut(&Bytes) -> usize) -> f64 {
    let start = std::time::Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(300) {
        for (_, b) in corpus {
            black_box(f(b));
        }
        n += corpus.len() as u64;
    }
    let secs = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    n as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summary(corpus: &[(&str, Bytes)]) {
    let mut out = Vec::with_capacity(4096);
    println!(
        "== allocations per message (corpus of {} messages) ==",
        corpus.len()
    );
    println!(
        "sbc-proto parse:            {:.2}",
        allocs_per_message(corpus, ours_parse)
    );
    println!(
        "sbc-proto parse+access:     {:.2}",
        allocs_per_message(corpus, ours_access)
    );
    println!(
        "sbc-proto parse+edit+write: {:.2}",
        allocs_per_message(corpus, |b| ours_edit(b, &mut out))
    );
    println!(
        "rsip parse:                 {:.2}",
        allocs_per_message(corpus, rsip_parse)
    );
    println!(
        "rsip parse+access:          {:.2}",
        allocs_per_message(corpus, rsip_access)
    );
    println!(
        "rsip parse+edit+to_string:  {:.2}",
        allocs_per_message(corpus, rsip_edit)
    );
    for (name, b) in corpus {
        let a = allocs_per_message(&[(name, b.clone())], ours_parse);
        println!("  sbc-proto parse {name}: {a:.2} allocations");
    }
    println!(
        "== throughput, interleaved A/B, median of 7 x 300 ms (messages per CPU-second of the thread) =="
    );
    let mut out2 = Vec::with_capacity(4096);
    type Bench<'a> = (
        &'a str,
        Box<dyn FnMut(&Bytes) -> usize + 'a>,
        Box<dyn FnMut(&Bytes) -> usize + 'a>,
    );
    let cases: Vec<Bench<'_>> = vec![
        ("parse", Box::new(ours_parse), Box::new(rsip_parse)),
        ("parse+access", Box::new(ours_access), Box::new(rsip_access)),
        (
            "parse+edit+serialize",
            Box::new(|b| ours_edit(b, &mut out2)),
            Box::new(rsip_edit),
        ),
    ];
    for (name, mut ours, mut theirs) in cases {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            a.push(messages_per_second(corpus, &mut *ours));
            b.push(messages_per_second(corpus, &mut *theirs));
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{name:<22} sbc-proto {a:>12.0}  rsip {b:>12.0}  ratio {:.1}x",
            a / b
        );
    }
}

fn main() {
    let corpus = corpus();
    for (name, b) in &corpus {
        assert!(
            Message::parse(b.clone(), &Limits::default()).is_ok(),
            "{name} must parse"
        );
        assert!(
            rsip::SipMessage::try_from(&b[..]).is_ok(),
            "{name} must parse with rsip"
        );
    }
    // Profiling one Criterion group is easier without the A/B summary in the same process.
    if std::env::var_os("PARSE_BENCH_NO_SUMMARY").is_none() {
        summary(&corpus);
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let n = corpus.len() as u64;
    let mut out = Vec::with_capacity(4096);
    {
        let mut g = c.benchmark_group("parse");
        g.throughput(Throughput::Elements(n));
        g.bench_function("sbc-proto", |b| {
            b.iter(|| corpus.iter().map(|(_, m)| ours_parse(m)).sum::<usize>())
        });
        g.bench_function("rsip", |b| {
            b.iter(|| corpus.iter().map(|(_, m)| rsip_parse(m)).sum::<usize>())
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("parse+access");
        g.throughput(Throughput::Elements(n));
        g.bench_function("sbc-proto", |b| {
            b.iter(|| corpus.iter().map(|(_, m)| ours_access(m)).sum::<usize>())
        });
        g.bench_function("rsip", |b| {
            b.iter(|| corpus.iter().map(|(_, m)| rsip_access(m)).sum::<usize>())
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("parse+edit+serialize");
        g.throughput(Throughput::Elements(n));
        g.bench_function("sbc-proto", |b| {
            b.iter(|| {
                corpus
                    .iter()
                    .map(|(_, m)| ours_edit(m, &mut out))
                    .sum::<usize>()
            })
        });
        g.bench_function("rsip", |b| {
            b.iter(|| corpus.iter().map(|(_, m)| rsip_edit(m)).sum::<usize>())
        });
        g.finish();
    }
    c.final_summary();
}
