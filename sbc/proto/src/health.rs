//! Trunk health by OPTIONS pings (RFC 3261 §11): one ping per interval; a trunk goes down after
//! `down_after` consecutive failures (no answer within `timeout`, 408 or 5xx) and up again
//! after `up_after` consecutive successes (any other final answer: even 404 or 405 shows a
//! live proxy). Sans-I/O like the registration client.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    ids::Rng,
    net::TransportKind,
    sip::Message,
    transaction::{NonInviteClient, TimerConfig},
};

/// A trunk's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not enough answers yet; treated as up.
    Unknown,
    /// Answering.
    Up,
    /// Not answering (or answering with server errors): calls skip it.
    Down,
}

impl Health {
    /// A lower-case label for metrics and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }

    /// Whether calls may use the trunk.
    pub const fn usable(self) -> bool {
        !matches!(self, Self::Down)
    }
}

/// Parameters of the health check of one trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// The proxy pinged.
    pub target: SocketAddr,
    /// Our address on the carrier side.
    pub local: SocketAddr,
    /// Transport toward the proxy.
    pub transport: TransportKind,
    /// Time between pings.
    pub interval: Duration,
    /// A ping unanswered this long has failed.
    pub timeout: Duration,
    /// Consecutive successes that bring a trunk up.
    pub up_after: u32,
    /// Consecutive failures that take a trunk down.
    pub down_after: u32,
    /// Transaction timers (retransmissions over UDP).
    pub timers: TimerConfig,
    /// `User-Agent` value.
    pub user_agent: String,
}

/// The health check of one trunk.
#[derive(Debug)]
pub struct HealthCheck {
    cfg: HealthConfig,
    rng: Rng,
    state: Health,
    successes: u32,
    failures: u32,
    tx: Option<(NonInviteClient, Instant)>,
    call_id: String,
    branch: String,
    cseq: u32,
    next_at: Option<Instant>,
    transmits: VecDeque<Bytes>,
    changed: bool,
}

impl HealthCheck {
    /// A check for `cfg`; the first ping goes out at `now`.
    pub fn new(cfg: HealthConfig, mut rng: Rng, now: Instant) -> Self {
        let call_id = format!("{}@{}", rng.token(), cfg.local.ip());
        Self {
            cfg,
            rng,
            state: Health::Unknown,
            successes: 0,
            failures: 0,
            tx: None,
            call_id,
            branch: String::new(),
            cseq: 0,
            next_at: Some(now),
            transmits: VecDeque::new(),
            changed: false,
        }
    }

    /// The current health.
    pub fn state(&self) -> Health {
        self.state
    }

    /// The new health, once per change.
    pub fn poll_change(&mut self) -> Option<Health> {
        std::mem::take(&mut self.changed).then_some(self.state)
    }

    /// The next OPTIONS to send to the proxy.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// When [`HealthCheck::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self
            .tx
            .as_ref()
            .map(|(t, deadline)| t.poll_timeout().map_or(*deadline, |a| a.min(*deadline)));
        match (tx, self.next_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether `resp` answers our outstanding ping.
    pub fn matches(&self, resp: &Message) -> bool {
        self.tx.is_some()
            && resp.call_id() == self.call_id
            && resp.top_branch() == Some(self.branch.as_str())
    }

    /// Handles a response to a ping (others are ignored).
    pub fn handle_response(&mut self, now: Instant, resp: &Message) {
        if !self.matches(resp) {
            return;
        }
        let Some(status) = resp.status().map(|s| s.as_u16()) else {
            return;
        };
        if status < 200 {
            if let Some((t, _)) = self.tx.as_mut() {
                t.handle_response(now, status);
            }
            return;
        }
        self.tx = None;
        self.record(status != 408 && status < 500);
    }

    /// Fires due timers: retransmissions, ping timeouts, the next ping.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut failed = false;
        if let Some((t, deadline)) = self.tx.as_mut() {
            t.handle_timeout(now);
            while let Some(b) = t.poll_transmit() {
                self.transmits.push_back(b);
            }
            // Timer F or a transport error ends it as well as our own deadline.
            let ended = std::iter::from_fn(|| t.poll_event()).count() > 0;
            failed = ended || now >= *deadline;
        }
        if failed {
            self.tx = None;
            self.record(false);
        }
        if self.next_at.is_some_and(|at| at <= now) {
            // A ping still outstanding at the next interval has failed.
            if self.tx.take().is_some() {
                self.record(false);
            }
            self.next_at = Some(now + self.cfg.interval);
            self.send(now);
        }
    }

    fn record(&mut self, ok: bool) {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.state != Health::Up && self.successes >= self.cfg.up_after {
                self.state = Health::Up;
                self.changed = true;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.state != Health::Down && self.failures >= self.cfg.down_after {
                self.state = Health::Down;
                self.changed = true;
            }
        }
    }

    fn send(&mut self, now: Instant) {
        self.cseq = self.cseq.wrapping_add(1).max(1);
        self.branch = self.rng.branch();
        let host = match self.cfg.target {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let local = match self.cfg.local {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let tag = self.rng.token();
        let text = format!(
            "OPTIONS sip:{host} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:sbc@{local}>;tag={tag}\r\n\
             To: <sip:{host}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} OPTIONS\r\n\
             User-Agent: {}\r\n\
             Content-Length: 0\r\n\r\n",
            self.cfg.transport.via_token(),
            self.branch,
            self.call_id,
            self.cseq,
            self.cfg.user_agent,
        );
        let mut t = NonInviteClient::new(
            now,
            Bytes::from(text),
            self.cfg.transport.is_reliable(),
            self.cfg.timers,
        );
        while let Some(b) = t.poll_transmit() {
            self.transmits.push_back(b);
        }
        self.tx = Some((t, now + self.cfg.timeout));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{HeaderName, Limits};

    fn check(now: Instant) -> HealthCheck {
        HealthCheck::new(
            HealthConfig {
                target: "198.51.100.7:5060".parse().expect("literal"),
                local: "203.0.113.1:5080".parse().expect("literal"),
                transport: TransportKind::Udp,
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(3),
                up_after: 2,
                down_after: 3,
                timers: TimerConfig::default(),
                user_agent: "sbc-test".into(),
            },
            Rng::from_test_seed(5),
            now,
        )
    }

    fn answer(req: &Bytes, status: u16) -> Message {
        let req = Message::parse(req.clone(), &Limits::default()).expect("OPTIONS parses");
        let hv = |n| {
            req.headers()
                .first(n)
                .and_then(|h| h.value_str())
                .unwrap_or("")
                .to_owned()
        };
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=p\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Content-Length: 0\r\n\r\n",
            hv(HeaderName::Via),
            hv(HeaderName::From),
            hv(HeaderName::To),
            req.call_id(),
            hv(HeaderName::CSeq),
        );
        Message::parse(Bytes::from(text), &Limits::default()).expect("response parses")
    }

    /// Runs one interval: a ping goes out; `status` answers it (None: no answer).
    fn round(h: &mut HealthCheck, now: &mut Instant, status: Option<u16>) {
        h.handle_timeout(*now);
        let ping = h.poll_transmit().expect("a ping per interval");
        while h.poll_transmit().is_some() {}
        if let Some(s) = status {
            let resp = answer(&ping, s);
            assert!(h.matches(&resp));
            h.handle_response(*now, &resp);
        }
        // Run out the interval, firing retransmission and timeout timers.
        let end = *now + Duration::from_secs(10);
        while let Some(at) = h.poll_timeout() {
            if at >= end {
                break;
            }
            h.handle_timeout(at);
            while h.poll_transmit().is_some() {}
        }
        *now = end;
    }

    #[test]
    fn thresholds_take_a_trunk_down_and_up_again() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let mut now = Instant::now();
        let mut h = check(now);
        assert_eq!(h.state(), Health::Unknown);
        assert!(h.state().usable());
        round(&mut h, &mut now, Some(200));
        assert_eq!(h.state(), Health::Unknown, "one success is not enough");
        round(&mut h, &mut now, Some(405));
        assert_eq!(
            h.poll_change(),
            Some(Health::Up),
            "405 still shows a live proxy"
        );
        // Failures: timeout, 503, 408 → down on the third.
        round(&mut h, &mut now, None);
        round(&mut h, &mut now, Some(503));
        assert_eq!(h.state(), Health::Up);
        round(&mut h, &mut now, Some(408));
        assert_eq!(h.poll_change(), Some(Health::Down));
        assert!(!h.state().usable());
        assert_eq!(h.poll_change(), None, "reported once");
        // A success between failures resets the count; two in a row bring it up.
        round(&mut h, &mut now, Some(200));
        assert_eq!(h.state(), Health::Down);
        round(&mut h, &mut now, Some(200));
        assert_eq!(h.poll_change(), Some(Health::Up));
    }

    #[test]
    fn stray_and_provisional_answers_do_not_count() {
        #[allow(
            clippy::disallowed_methods,
            reason = "test origin only; time is simulated"
        )]
        let now = Instant::now();
        let mut h = check(now);
        h.handle_timeout(now);
        let ping = h.poll_transmit().expect("ping");
        let trying = answer(&ping, 100);
        h.handle_response(now, &trying);
        assert!(
            h.matches(&answer(&ping, 200)),
            "still outstanding after a 100"
        );
        let ok = answer(&ping, 200);
        h.handle_response(now, &ok);
        h.handle_response(now, &ok);
        assert!(
            !h.matches(&ok),
            "answered once; the retransmission is ignored"
        );
        assert_eq!(h.successes, 1);
    }
}
