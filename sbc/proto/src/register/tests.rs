//! The registration state machine with simulated time and a scripted registrar.

use super::*;
use crate::{
    auth::Secret,
    sip::{Auth, Limits},
};

const NONCE: &str = "reg-nonce-1";

fn cfg(credentials: bool) -> RegConfig {
    RegConfig {
        user: "4930123".into(),
        domain: "sip.carrier.example".into(),
        local: "203.0.113.1:5080".parse().expect("literal"),
        transport: TransportKind::Udp,
        expires: 600,
        credentials: credentials.then(|| Credentials {
            username: "4930123".into(),
            password: Secret::new("s3cret"),
            realm: None,
        }),
        timers: TimerConfig::default(),
        user_agent: "sbc-test".into(),
        backoff_base: Duration::from_secs(30),
        backoff_max: Duration::from_secs(1800),
    }
}

struct Sim {
    reg: Registration,
    now: Instant,
    sent: Vec<Message>,
}

impl Sim {
    fn new(credentials: bool) -> Self {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let now = Instant::now();
        Self {
            reg: Registration::new(cfg(credentials), Rng::from_test_seed(3)),
            now,
            sent: Vec::new(),
        }
    }

    fn collect(&mut self) {
        while let Some(b) = self.reg.poll_transmit() {
            let m = Message::parse(b, &Limits::default()).expect("REGISTER parses");
            self.sent.push(m);
        }
    }

    fn take(&mut self) -> Vec<Message> {
        self.collect();
        std::mem::take(&mut self.sent)
    }

    /// The one REGISTER sent since the last call.
    fn one(&mut self) -> Message {
        let mut v = self.take();
        assert_eq!(v.len(), 1, "exactly one REGISTER: {v:?}");
        v.remove(0)
    }

    /// Moves time to `at` (at least), firing every timer on the way.
    fn advance_to(&mut self, at: Instant) {
        while let Some(t) = self.reg.poll_timeout() {
            if t > at {
                break;
            }
            self.now = self.now.max(t);
            self.reg.handle_timeout(self.now);
            self.collect();
        }
        self.now = self.now.max(at);
    }

    fn answer(&mut self, req: &Message, status: u16, extra: &str) {
        let mut text = format!("SIP/2.0 {status} Whatever\r\n");
        for h in req.headers().all(HeaderName::Via) {
            text.push_str(&format!("Via: {}\r\n", h.value_str().unwrap_or("")));
        }
        let hv = |n| {
            req.headers()
                .first(n)
                .and_then(|h| h.value_str())
                .unwrap_or("")
                .to_owned()
        };
        text.push_str(&format!(
            "From: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            hv(HeaderName::From),
            hv(HeaderName::To),
            req.call_id(),
            hv(HeaderName::CSeq),
        ));
        let m = Message::parse(Bytes::from(text), &Limits::default()).expect("response parses");
        self.reg.handle_response(self.now, &m);
        self.collect();
    }
}

fn header(m: &Message, name: &str) -> Option<String> {
    m.headers()
        .all_named(name)
        .next()
        .and_then(|h| h.value_str())
        .map(str::to_owned)
}

fn challenge_401(extra: &str) -> String {
    format!(
        "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"{NONCE}\", qop=\"auth\", \
         algorithm=MD5{extra}\r\n"
    )
}

/// Checks the digest in `req`'s Authorization against an independent computation.
fn assert_auth(req: &Message, nonce: &str, nc: u32) {
    let v = header(req, "Authorization").expect("Authorization");
    let a = Auth::parse(&v).expect("parses");
    assert_eq!(a.param("uri"), Some("sip:sip.carrier.example"));
    assert_eq!(a.param("nonce"), Some(nonce));
    assert_eq!(a.param("nc"), Some(format!("{nc:08x}").as_str()));
    let cnonce = a.param("cnonce").expect("cnonce");
    let expected = Challenge::parse(&format!(
        "Digest realm=\"carrier\", nonce=\"{nonce}\", qop=\"auth\""
    ))
    .expect("challenge")
    .respond(
        cfg(true).credentials.as_ref().expect("creds"),
        "REGISTER",
        "sip:sip.carrier.example",
        nc,
        cnonce,
    )
    .expect("answerable");
    assert_eq!(a.param("response"), Some(expected.response.as_str()));
}

#[test]
fn challenge_registration_and_refresh_before_expiry() {
    let mut sim = Sim::new(true);
    assert_eq!(sim.reg.state(), RegState::Unregistered);
    sim.reg.start(sim.now);
    let r1 = sim.one();
    assert_eq!(sim.reg.state(), RegState::Registering);
    assert_eq!(r1.request_uri_str(), Some("sip:sip.carrier.example"));
    assert_eq!(r1.cseq().seq, 1);
    assert_eq!(header(&r1, "Expires").as_deref(), Some("600"));
    assert_eq!(
        header(&r1, "Contact").as_deref(),
        Some("<sip:4930123@203.0.113.1:5080>")
    );
    assert!(header(&r1, "Authorization").is_none());

    sim.answer(&r1, 401, &challenge_401(""));
    let r2 = sim.one();
    assert_eq!(
        r2.cseq().seq,
        2,
        "CSeq + 1 (RFC 3261 §10.2.4: same Call-ID)"
    );
    assert_eq!(r2.call_id(), r1.call_id());
    assert_ne!(r2.top_via().branch(), r1.top_via().branch());
    assert_auth(&r2, NONCE, 1);
    assert_eq!(sim.reg.state(), RegState::Registering);

    // Granted: the Contact's expires (300) wins over the Expires header.
    sim.answer(
        &r2,
        200,
        "Contact: <sip:4930123@203.0.113.1:5080>;expires=300\r\nExpires: 600\r\n",
    );
    assert_eq!(sim.reg.state(), RegState::Registered);
    assert_eq!(sim.reg.granted(), Some(300));
    let t_ok = sim.now;
    assert_eq!(
        sim.reg.next_attempt(),
        Some(t_ok + Duration::from_secs(240))
    );

    // Nothing before the refresh time; then one REGISTER with the same nonce and nc 2.
    sim.advance_to(t_ok + Duration::from_secs(239));
    assert!(sim.take().is_empty(), "no early refresh");
    sim.advance_to(t_ok + Duration::from_secs(240));
    let r3 = sim.one();
    assert_eq!(r3.cseq().seq, 3);
    assert_auth(&r3, NONCE, 2);
    assert_eq!(
        sim.reg.state(),
        RegState::Registering,
        "refreshing is visible"
    );
    // A short binding (60 s) is refreshed half-way.
    sim.answer(&r3, 200, "Expires: 60\r\n");
    assert_eq!(sim.reg.granted(), Some(60));
    assert_eq!(
        sim.reg.next_attempt(),
        Some(sim.now + Duration::from_secs(30))
    );

    // A refresh whose nonce went stale is challenged again and answered with a new nonce.
    sim.advance_to(sim.now + Duration::from_secs(30));
    let r4 = sim.one();
    sim.answer(
        &r4,
        401,
        &challenge_401(", stale=true").replace(NONCE, "reg-nonce-2"),
    );
    let r5 = sim.one();
    assert_auth(&r5, "reg-nonce-2", 1);
    sim.answer(&r5, 200, "Expires: 600\r\n");
    assert_eq!(sim.reg.state(), RegState::Registered);

    // Shutdown: Expires 0, then unregistered.
    assert!(sim.reg.stop(sim.now));
    let r6 = sim.one();
    assert_eq!(header(&r6, "Expires").as_deref(), Some("0"));
    sim.answer(&r6, 200, "");
    assert_eq!(sim.reg.state(), RegState::Unregistered);
    assert_eq!(sim.reg.poll_timeout(), None, "nothing left to do");
}

#[test]
fn interval_too_brief_retries_with_min_expires() {
    let mut sim = Sim::new(false);
    sim.reg.start(sim.now);
    let r1 = sim.one();
    sim.answer(&r1, 423, "Min-Expires: 1800\r\n");
    let r2 = sim.one();
    assert_eq!(header(&r2, "Expires").as_deref(), Some("1800"));
    assert_eq!(r2.cseq().seq, 2);
    sim.answer(&r2, 200, "Expires: 1800\r\n");
    assert_eq!(
        (sim.reg.state(), sim.reg.granted()),
        (RegState::Registered, Some(1800))
    );
    // The raised expiry sticks for refreshes.
    sim.advance_to(sim.now + Duration::from_secs(1740));
    let r3 = sim.one();
    assert_eq!(header(&r3, "Expires").as_deref(), Some("1800"));

    // A 423 without a usable Min-Expires is a definitive failure, not a loop.
    sim.answer(&r3, 423, "");
    assert_eq!(sim.reg.state(), RegState::Failed);
    assert!(sim.take().is_empty());
}

#[test]
fn refused_credentials_fail_and_wait_the_longest_backoff() {
    let mut sim = Sim::new(true);
    sim.reg.start(sim.now);
    let r1 = sim.one();
    sim.answer(&r1, 401, &challenge_401(""));
    let r2 = sim.one();
    sim.answer(&r2, 401, &challenge_401("").replace(NONCE, "other"));
    assert_eq!(sim.reg.state(), RegState::Failed);
    assert!(sim.take().is_empty(), "no third REGISTER");
    assert_eq!(
        sim.reg.next_attempt(),
        Some(sim.now + Duration::from_secs(1800))
    );
    // Without credentials a challenge fails at once.
    let mut sim = Sim::new(false);
    sim.reg.start(sim.now);
    let r1 = sim.one();
    sim.answer(&r1, 407, &challenge_401("").replace("WWW-", "Proxy-"));
    assert_eq!(sim.reg.state(), RegState::Failed);
}

#[test]
fn timeouts_back_off_exponentially_with_jitter_and_retry_after_wins() {
    let mut sim = Sim::new(false);
    sim.reg.start(sim.now);
    let mut expected_full = Duration::from_secs(30);
    for round in 0..8 {
        let first = sim.take();
        assert!(!first.is_empty(), "round {round}: a REGISTER went out");
        // No answer: UDP retransmissions, then Timer F (64·T1 = 32 s).
        let sent_at = sim.now;
        sim.advance_to(sent_at + Duration::from_secs(32));
        let resent = sim.take();
        assert!(
            resent.len() >= 5,
            "round {round}: retransmitted ({})",
            resent.len()
        );
        assert!(resent.iter().all(|m| m.cseq().seq == first[0].cseq().seq));
        assert_eq!(sim.reg.state(), RegState::BackingOff, "round {round}");
        let wait = sim
            .reg
            .next_attempt()
            .expect("a retry is planned")
            .duration_since(sim.now);
        assert!(
            wait >= expected_full / 2 && wait <= expected_full,
            "round {round}: {wait:?} not in 50-100 % of {expected_full:?}"
        );
        sim.advance_to(sim.now + wait);
        expected_full = (expected_full * 2).min(Duration::from_secs(1800));
    }
    // A 503 with Retry-After: the registrar's delay wins; success resets the backoff.
    let r = sim.one();
    sim.answer(&r, 503, "Retry-After: 120\r\n");
    assert_eq!(sim.reg.state(), RegState::BackingOff);
    assert_eq!(
        sim.reg.next_attempt(),
        Some(sim.now + Duration::from_secs(120))
    );
    sim.advance_to(sim.now + Duration::from_secs(120));
    let r = sim.one();
    sim.answer(&r, 200, "Expires: 600\r\n");
    assert_eq!(sim.reg.state(), RegState::Registered);
    assert!(sim.reg.stop(sim.now));
    let bye = sim.one();
    assert_eq!(header(&bye, "Expires").as_deref(), Some("0"));
    assert!(bye.cseq().seq > r.cseq().seq);
}

#[test]
fn stop_before_any_binding_sends_nothing_and_stray_responses_are_ignored() {
    let mut sim = Sim::new(false);
    assert!(!sim.reg.stop(sim.now));
    assert!(sim.take().is_empty());
    assert_eq!(sim.reg.state(), RegState::Unregistered);

    sim.reg.start(sim.now);
    let r1 = sim.one();
    // A response for another branch changes nothing.
    let text = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.1:5080;branch=z9hG4bKother\r\n\
         From: <sip:a@b>;tag=x\r\nTo: <sip:a@b>;tag=y\r\nCall-ID: {}\r\nCSeq: 1 REGISTER\r\n\
         Content-Length: 0\r\n\r\n",
        r1.call_id()
    );
    let m = Message::parse(Bytes::from(text), &Limits::default()).expect("parses");
    sim.reg.handle_response(sim.now, &m);
    assert_eq!(sim.reg.state(), RegState::Registering);
    // The real answer, then its retransmission: only the first counts.
    sim.answer(&r1, 200, "Expires: 600\r\n");
    let next = sim.reg.next_attempt();
    sim.now += Duration::from_secs(1);
    sim.answer(&r1, 200, "Expires: 60\r\n");
    assert_eq!(sim.reg.next_attempt(), next);
    assert_eq!(sim.reg.granted(), Some(600));
}
