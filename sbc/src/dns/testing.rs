//! A tiny authoritative DNS server for tests (not for production): answers A, AAAA and SRV
//! from an in-memory zone that the test changes while it runs, on a UDP socket the test binds
//! (on loopback, or inside a network namespace it created). It never forwards anything.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use hickory_resolver::proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, SRV},
    },
};
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct Zone {
    /// (owner name lower case without trailing dot, record).
    records: Vec<(String, Record)>,
    failing: bool,
    queries: Vec<(String, RecordType)>,
}

/// The server; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct FakeDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn owner(name: &str) -> io::Result<Name> {
    Name::from_ascii(format!("{}.", key(name))).map_err(|e| io::Error::other(e.to_string()))
}

impl FakeDns {
    /// Serves on 127.0.0.1, on a port the kernel picks.
    pub fn bind_loopback() -> io::Result<Self> {
        Self::serve(UdpSocket::bind("127.0.0.1:0")?)
    }

    /// Serves on `socket` (bound by the caller, e.g. inside a namespace) in its own thread.
    pub fn serve(socket: UdpSocket) -> io::Result<Self> {
        let addr = socket.local_addr()?;
        // The loop checks the stop flag at least this often.
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (zone, stop) = (zone.clone(), stop.clone());
            std::thread::Builder::new()
                .name("fake-dns".into())
                .spawn(move || serve_loop(&socket, &zone, &stop))?
        };
        Ok(Self {
            addr,
            zone,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the A/AAAA records of `name`.
    pub fn set_addrs(&self, name: &str, ips: &[IpAddr], ttl: u32) -> io::Result<()> {
        let n = owner(name)?;
        let mut z = self.zone.lock();
        z.records.retain(|(k, r)| {
            *k != key(name) || !matches!(r.record_type(), RecordType::A | RecordType::AAAA)
        });
        for ip in ips {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            z.records
                .push((key(name), Record::from_rdata(n.clone(), ttl, data)));
        }
        Ok(())
    }

    /// Replaces the SRV records of `name` (e.g. `_sip._udp.carrier.test`) with
    /// `(priority, weight, port, target)`.
    pub fn set_srv(
        &self,
        name: &str,
        records: &[(u16, u16, u16, &str)],
        ttl: u32,
    ) -> io::Result<()> {
        let n = owner(name)?;
        let mut z = self.zone.lock();
        z.records
            .retain(|(k, r)| *k != key(name) || r.record_type() != RecordType::SRV);
        for (priority, weight, port, target) in records {
            let data = RData::SRV(SRV::new(*priority, *weight, *port, owner(target)?));
            z.records
                .push((key(name), Record::from_rdata(n.clone(), ttl, data)));
        }
        Ok(())
    }

    /// While on, every query gets SERVFAIL.
    pub fn set_failing(&self, failing: bool) {
        self.zone.lock().failing = failing;
    }

    /// The queries received so far: (name without trailing dot, type).
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.zone.lock().queries.clone()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_loop(socket: &UdpSocket, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let answer = respond(&query, zone);
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

fn respond(query: &Message, zone: &Mutex<Zone>) -> Message {
    let mut z = zone.lock();
    let mut out = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    out.metadata.authoritative = true;
    out.metadata.recursion_desired = query.metadata.recursion_desired;
    out.add_queries(query.queries.iter().cloned());
    if z.failing {
        out.metadata.response_code = ResponseCode::ServFail;
        return out;
    }
    let mut known = false;
    for q in &query.queries {
        let name = key(&q.name.to_ascii());
        z.queries.push((name.clone(), q.query_type));
        for (k, r) in &z.records {
            if *k == name {
                known = true;
                if r.record_type() == q.query_type {
                    out.add_answer(r.clone());
                }
            }
        }
    }
    if !known {
        out.metadata.response_code = ResponseCode::NXDomain;
    }
    out
}
