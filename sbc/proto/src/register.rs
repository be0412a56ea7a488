//! Outbound registration of one trunk (RFC 3261 §10.2): a sans-I/O client that sends REGISTER
//! to the carrier's registrar, answers digest challenges (RFC 3261 §22, RFC 8760), honours
//! 423 Interval Too Brief (§10.2.8: retry with Min-Expires), refreshes before the binding
//! expires, backs off with jitter after failures (the scheme of RFC 5626 §4.5) and removes the
//! binding on shutdown (`Expires: 0`, §10.2.2).
//!
//! Feed it with [`Registration::handle_response`] for responses whose CSeq method is REGISTER
//! and [`Registration::handle_timeout`] when [`Registration::poll_timeout`] is due; send what
//! [`Registration::poll_transmit`] returns to the registrar.

use std::{
    collections::VecDeque,
    fmt,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    auth::{Challenge, Credentials},
    ids::Rng,
    net::TransportKind,
    sip::{Contact, HeaderName, Message},
    transaction::{NonInviteClient, TimerConfig, TxEvent},
};

/// Where a registration stands (visible in metrics and the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// No binding, and none wanted (before start, after de-registration).
    Unregistered,
    /// A REGISTER is outstanding (first registration, refresh, or retry after a challenge).
    Registering,
    /// The registrar holds our binding.
    Registered,
    /// The registrar refused us (credentials refused, 403, 404…); retried after the longest
    /// backoff, since only a configuration change is likely to help.
    Failed,
    /// A transient failure (timeout, 408, 5xx); retried after an increasing delay.
    BackingOff,
}

impl RegState {
    /// A lower-case label for metrics and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unregistered => "unregistered",
            Self::Registering => "registering",
            Self::Registered => "registered",
            Self::Failed => "failed",
            Self::BackingOff => "backing_off",
        }
    }
}

impl fmt::Display for RegState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a registration needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegConfig {
    /// The account user (From/To user part).
    pub user: String,
    /// The registrar's domain: Request-URI `sip:{domain}` and the From/To host.
    pub domain: String,
    /// Our address on the carrier side (Via, Contact).
    pub local: SocketAddr,
    /// Transport toward the registrar.
    pub transport: TransportKind,
    /// Expiry to ask for, seconds.
    pub expires: u32,
    /// Digest credentials, if the registrar challenges.
    pub credentials: Option<Credentials>,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// `User-Agent` value.
    pub user_agent: String,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

/// How many 401/407/423 answers one registration attempt may get before it counts as failed.
const MAX_RETRIES_PER_ATTEMPT: u8 = 3;

/// One trunk's registration.
#[derive(Debug)]
pub struct Registration {
    cfg: RegConfig,
    rng: Rng,
    state: RegState,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// Expiry we ask for (raised by 423).
    expires: u32,
    /// Expiry the registrar granted last.
    granted: Option<u32>,
    tx: Option<NonInviteClient>,
    branch: String,
    /// Authorization header of the last challenge, reused on refreshes with nc + 1.
    auth: Option<(bool, Challenge, u32)>,
    /// 401/407/423 answers within the current attempt.
    retries: u8,
    /// Consecutive failed attempts (for the backoff).
    failures: u32,
    /// When to send the next REGISTER (refresh or retry).
    next_at: Option<Instant>,
    /// De-registering: the outstanding REGISTER has `Expires: 0`.
    removing: bool,
    /// The transaction reported termination while draining.
    tx_done: bool,
    transmits: VecDeque<Bytes>,
}

impl Registration {
    /// A registration for `cfg`, not started.
    pub fn new(cfg: RegConfig, mut rng: Rng) -> Self {
        let call_id = format!("{}@{}", rng.token(), cfg.local.ip());
        let from_tag = rng.token();
        let expires = cfg.expires;
        Self {
            cfg,
            rng,
            state: RegState::Unregistered,
            call_id,
            from_tag,
            cseq: 0,
            expires,
            granted: None,
            tx: None,
            branch: String::new(),
            auth: None,
            retries: 0,
            failures: 0,
            next_at: None,
            removing: false,
            tx_done: false,
            transmits: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> RegState {
        self.state
    }

    /// The expiry the registrar granted last (None before the first success).
    pub fn granted(&self) -> Option<u32> {
        self.granted
    }

    /// When the next REGISTER goes out on its own (refresh or retry).
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_at
    }

    /// Sends the first REGISTER.
    pub fn start(&mut self, now: Instant) {
        self.removing = false;
        self.retries = 0;
        self.send(now);
    }

    /// Removes the binding (`Expires: 0`). Returns false if there is nothing to remove, so the
    /// caller need not wait for an answer.
    pub fn stop(&mut self, now: Instant) -> bool {
        self.next_at = None;
        if self.granted.is_none() && self.state != RegState::Registering {
            self.state = RegState::Unregistered;
            return false;
        }
        self.removing = true;
        self.retries = 0;
        self.send(now);
        true
    }

    /// The next REGISTER to send to the registrar.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// When [`Registration::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.tx.as_ref().and_then(NonInviteClient::poll_timeout);
        match (tx, self.next_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether `resp` answers our outstanding REGISTER (top Via branch and Call-ID).
    pub fn matches(&self, resp: &Message) -> bool {
        resp.call_id() == self.call_id && resp.top_branch() == Some(self.branch.as_str())
    }

    /// Fires due timers: transaction retransmissions and timeouts, refreshes and retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(tx) = self.tx.as_mut() {
            tx.handle_timeout(now);
            self.drain_tx(now);
        }
        if self.next_at.is_some_and(|at| at <= now) && self.tx.is_none() {
            self.next_at = None;
            self.retries = 0;
            self.send(now);
        }
    }

    /// Handles a response to a REGISTER (others are ignored).
    pub fn handle_response(&mut self, now: Instant, resp: &Message) {
        if !self.matches(resp) {
            return;
        }
        let Some(status) = resp.status().map(|s| s.as_u16()) else {
            return;
        };
        let pass = self
            .tx
            .as_mut()
            .is_some_and(|tx| tx.handle_response(now, status));
        self.drain_tx(now);
        if !pass || status < 200 {
            return;
        }
        // The transaction has its final answer; retransmissions of it no longer match a live
        // transaction and are ignored, which is all Timer K would do for us.
        self.tx = None;
        match status {
            200..=299 => self.on_success(now, resp),
            401 | 407 => {
                let answered = self.answer_challenge(status, resp);
                if answered {
                    self.send(now);
                } else {
                    self.fail(now, true, None);
                }
            }
            423 => {
                // §10.2.8: ask again with at least Min-Expires.
                let min = resp.headers().min_expires().ok().flatten();
                match min {
                    Some(m) if m > self.expires && self.retries < MAX_RETRIES_PER_ATTEMPT => {
                        self.retries += 1;
                        self.expires = m;
                        self.send(now);
                    }
                    _ => self.fail(now, true, None),
                }
            }
            408 | 500..=599 => {
                let retry_after = resp
                    .headers()
                    .retry_after()
                    .ok()
                    .flatten()
                    .map(|r| Duration::from_secs(u64::from(r.seconds)));
                self.fail(now, false, retry_after);
            }
            _ => self.fail(now, true, None),
        }
    }

    fn on_success(&mut self, now: Instant, resp: &Message) {
        self.retries = 0;
        self.failures = 0;
        if self.removing {
            self.removing = false;
            self.granted = None;
            self.state = RegState::Unregistered;
            self.next_at = None;
            return;
        }
        // §10.2.4: our binding's expiry is the Contact's `expires`, else the Expires header.
        let ours = self.contact_uri();
        let from_contact = resp
            .contacts()
            .filter_map(Result::ok)
            .find_map(|c| match &c {
                Contact::Addr(na) if na.uri_str == ours => c.expires(),
                _ => None,
            });
        let granted = from_contact
            .or_else(|| resp.headers().expires().ok().flatten())
            .unwrap_or(self.expires);
        if granted == 0 {
            // The registrar kept no binding: treat as a failure rather than spin.
            self.fail(now, false, None);
            return;
        }
        self.granted = Some(granted);
        self.state = RegState::Registered;
        // Refresh with a margin: a minute early for long bindings, half-way for short ones.
        let refresh = if granted > 120 {
            granted - 60
        } else {
            granted / 2
        };
        self.next_at = Some(now + Duration::from_secs(u64::from(refresh.max(1))));
    }

    /// Prepares credentials for the next REGISTER; false if the challenge is not answerable
    /// or was already answered in this attempt (the credentials were refused).
    fn answer_challenge(&mut self, status: u16, resp: &Message) -> bool {
        if self.cfg.credentials.is_none() || self.retries >= MAX_RETRIES_PER_ATTEMPT {
            return false;
        }
        let name = if status == 401 {
            HeaderName::WwwAuthenticate
        } else {
            HeaderName::ProxyAuthenticate
        };
        let Ok(challenge) =
            Challenge::select(resp.headers().all(name).filter_map(|h| h.value_str()))
        else {
            return false;
        };
        // A second challenge in one attempt means refused credentials, unless the nonce only
        // went stale (RFC 7616 §3.3).
        let already = self.auth.as_ref().is_some_and(|(_, _, nc)| *nc > 0) && self.retries > 0;
        if already && !challenge.stale {
            return false;
        }
        self.retries += 1;
        self.auth = Some((status == 407, challenge, 0));
        true
    }

    fn fail(&mut self, now: Instant, definitive: bool, retry_after: Option<Duration>) {
        self.tx = None;
        self.retries = 0;
        self.auth = None;
        if self.removing {
            // Shutting down: nothing more to do, whatever the registrar thinks.
            self.removing = false;
            self.granted = None;
            self.state = RegState::Unregistered;
            self.next_at = None;
            return;
        }
        self.granted = None;
        self.failures = self.failures.saturating_add(1);
        let delay = if definitive {
            self.state = RegState::Failed;
            self.cfg.backoff_max
        } else {
            self.state = RegState::BackingOff;
            // RFC 5626 §4.5: min(max, base · 2^(failures-1)), then a random 50-100 % of it.
            let exp = self.failures.saturating_sub(1).min(16);
            let full = self
                .cfg
                .backoff_base
                .saturating_mul(1 << exp)
                .min(self.cfg.backoff_max);
            let pct = 50 + u32::try_from(self.rng.next_u64() % 51).unwrap_or(0);
            full.saturating_mul(pct) / 100
        };
        // A Retry-After from the registrar wins (RFC 3261 §21.5.4), but never a busy loop.
        let delay = retry_after.unwrap_or(delay).max(Duration::from_secs(1));
        self.next_at = Some(now + delay);
    }

    fn drain_tx(&mut self, now: Instant) {
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        let mut failed = false;
        while let Some(b) = tx.poll_transmit() {
            self.transmits.push_back(b);
        }
        while let Some(ev) = tx.poll_event() {
            match ev {
                TxEvent::TimedOut(_) | TxEvent::TransportError => failed = true,
                TxEvent::Terminated => self.tx_done = true,
            }
        }
        if std::mem::take(&mut self.tx_done) {
            self.tx = None;
        }
        if failed {
            // Timer F or an unreachable registrar: transient (§8.1.3.1 treats it as 408).
            self.fail(now, false, None);
        }
    }

    fn contact_uri(&self) -> String {
        let transport = match self.cfg.transport {
            TransportKind::Udp => "",
            TransportKind::Tcp => ";transport=tcp",
            TransportKind::Tls => ";transport=tls",
        };
        format!(
            "sip:{}@{}{transport}",
            self.cfg.user,
            hostport(self.cfg.local)
        )
    }

    fn send(&mut self, now: Instant) {
        self.cseq = self.cseq.wrapping_add(1).max(1);
        self.branch = self.rng.branch();
        self.state = if self.removing {
            self.state
        } else {
            RegState::Registering
        };
        let ruri = format!("sip:{}", self.cfg.domain);
        let aor = format!("<sip:{}@{}>", self.cfg.user, self.cfg.domain);
        let expires = if self.removing { 0 } else { self.expires };
        let mut auth_line = String::new();
        if let (Some((proxy, challenge, nc)), Some(creds)) =
            (self.auth.as_mut(), self.cfg.credentials.as_ref())
        {
            *nc += 1;
            let cnonce = self.rng.token();
            if let Ok(r) = challenge.respond(creds, "REGISTER", &ruri, *nc, &cnonce) {
                let name = if *proxy {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                };
                auth_line = format!("{name}: {}\r\n", r.header_value());
            }
        }
        let text = format!(
            "REGISTER {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {aor};tag={}\r\n\
             To: {aor}\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             Contact: <{}>\r\n\
             Expires: {expires}\r\n\
             {auth_line}\
             User-Agent: {}\r\n\
             Content-Length: 0\r\n\r\n",
            self.cfg.transport.via_token(),
            hostport(self.cfg.local),
            self.branch,
            self.from_tag,
            self.call_id,
            self.cseq,
            self.contact_uri(),
            self.cfg.user_agent,
        );
        let tx = NonInviteClient::new(
            now,
            Bytes::from(text),
            self.cfg.transport.is_reliable(),
            self.cfg.timers,
        );
        self.tx = Some(tx);
        self.drain_tx(now);
    }
}

fn hostport(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests;
