//! The transaction table: server and client transactions with their keys (RFC 3261 §17.1.3,
//! §17.2.3), draining their output, arming their timers and accounting their bytes.

use super::*;

#[derive(Debug)]
pub(super) enum STx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) tx: STx,
    pub(super) peer: Peer,
    pub(super) request: Message,
    pub(super) call: Option<u64>,
    /// Our To tag for responses to this request.
    pub(super) to_tag: Option<String>,
    /// Client key of the request relayed for it on the other leg.
    pub(super) relay: Option<String>,
    /// Key in the merged-request index (RFC 3261 §8.2.2.2).
    pub(super) merged: Option<(String, String, u32)>,
}

#[derive(Debug)]
pub(super) enum CTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The INVITE that created the call, on the callee leg.
    Initial,
    /// A request relayed for the server transaction `server` on the other leg.
    Relay { server: String },
    /// A request of the SBC's own (BYE on teardown, CANCEL): responses are absorbed.
    Own,
}

#[derive(Debug)]
pub(super) struct ClientEntry {
    pub(super) tx: CTx,
    pub(super) peer: Peer,
    pub(super) request: Message,
    pub(super) call: u64,
    pub(super) side: Side,
    pub(super) purpose: Purpose,
    /// How many times this request was already resent with credentials (the retry of a
    /// challenged request inherits the count + 1).
    pub(super) auth_attempts: u8,
    /// The trunk the request went to (its credentials answer a challenge), on the outside.
    pub(super) trunk: Option<usize>,
}

/// The outputs every transaction machine has, whichever of the four it is.
pub(super) trait Machine {
    fn held_bytes(&self) -> usize;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<TxEvent>;
    fn poll_timeout(&self) -> Option<Instant>;
}

macro_rules! machine_for {
    ($ty:ident) => {
        impl Machine for $ty {
            fn held_bytes(&self) -> usize {
                match self {
                    Self::Invite(t) => t.held_bytes(),
                    Self::NonInvite(t) => t.held_bytes(),
                }
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                match self {
                    Self::Invite(t) => t.poll_transmit(),
                    Self::NonInvite(t) => t.poll_transmit(),
                }
            }
            fn poll_event(&mut self) -> Option<TxEvent> {
                match self {
                    Self::Invite(t) => t.poll_event(),
                    Self::NonInvite(t) => t.poll_event(),
                }
            }
            fn poll_timeout(&self) -> Option<Instant> {
                match self {
                    Self::Invite(t) => t.poll_timeout(),
                    Self::NonInvite(t) => t.poll_timeout(),
                }
            }
        }
    };
}

machine_for!(STx);

machine_for!(CTx);

/// Moves everything `tx` has to send to `transmits` (toward `peer`; counted as retransmissions
/// when `resend`), hands each of its events to `on_event`, and returns its next deadline.
pub(super) fn drain(
    tx: &mut impl Machine,
    peer: Peer,
    resend: bool,
    retransmissions_sent: &mut u64,
    transmits: &mut VecDeque<Transmit>,
    mut on_event: impl FnMut(TxEvent),
) -> Option<Instant> {
    loop {
        let data = tx.poll_transmit();
        let event = tx.poll_event();
        if data.is_none() && event.is_none() {
            break;
        }
        if let Some(data) = data {
            if resend {
                *retransmissions_sent += 1;
            }
            transmits.push_back(Transmit { to: peer, data });
        }
        if let Some(event) = event {
            on_event(event);
        }
    }
    tx.poll_timeout()
}

/// The server transaction key (RFC 3261 §17.2.3; ACK maps to its INVITE), with the RFC 2543
/// fallback for branches without the magic cookie.
pub(super) fn server_key(msg: &Message) -> String {
    let via = msg.top_via();
    let method = match msg.method() {
        Some(Method::Ack) | None => "INVITE",
        Some(m) => m.as_str(),
    };
    let port = via.port.unwrap_or(5060);
    match via.branch().filter(|_| via.has_rfc3261_branch()) {
        Some(branch) => format!("{branch}|{}:{port}|{method}", via.host),
        None => format!(
            "2543|{}|{}|{}|{}|{}:{port}|{method}",
            msg.request_uri_str().unwrap_or(""),
            msg.from().tag().unwrap_or(""),
            msg.call_id(),
            msg.cseq().seq,
            via.host
        ),
    }
}

/// The client transaction key: our branch, with CANCEL distinguished (it shares the branch).
pub(super) fn client_key(branch: &str, cancel: bool) -> String {
    if cancel {
        format!("{branch}|CANCEL")
    } else {
        format!("{branch}|INVITE")
    }
}

/// (Call-ID, From tag, CSeq number) of an initial request, for merged-request detection.
pub(super) fn merged_key(msg: &Message) -> Option<(String, String, u32)> {
    Some((
        msg.call_id().to_owned(),
        msg.from().tag()?.to_owned(),
        msg.cseq().seq,
    ))
}

impl B2bua {
    pub(super) fn after_server(&mut self, now: Instant, key: &str, media: &mut dyn MediaControl) {
        let Some(e) = self.server.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        let resend = self.resending.as_deref() == Some(key);
        let deadline = drain(
            &mut e.tx,
            e.peer,
            resend,
            &mut self.retransmissions_sent,
            &mut self.transmits,
            |event| terminated |= event == TxEvent::Terminated,
        );
        let owner = TimerRef::Server(key.to_owned());
        match deadline {
            Some(at) if !terminated => self.timers.set(owner, at),
            _ => self.timers.cancel(&owner),
        }
        if terminated {
            self.ledger.remove_server(key);
            if let Some(e) = self.server.remove(key)
                && let Some(m) = e.merged
            {
                self.merged.remove(&m);
            }
        } else {
            self.ledger
                .set_server(key, e.request.as_bytes().len() + e.tx.held_bytes());
        }
        let _ = (now, media);
    }

    pub(super) fn after_client(&mut self, now: Instant, key: &str, media: &mut dyn MediaControl) {
        let Some(e) = self.client.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        let mut failure = None;
        let resend = self.resending.as_deref() == Some(key);
        let deadline = drain(
            &mut e.tx,
            e.peer,
            resend,
            &mut self.retransmissions_sent,
            &mut self.transmits,
            |event| match event {
                TxEvent::Terminated => terminated = true,
                TxEvent::TimedOut(t) => failure = Some(Some(t)),
                TxEvent::TransportError => failure = Some(None),
            },
        );
        let (call, purpose, side) = (e.call, e.purpose.clone(), e.side);
        let own_refresh = purpose == Purpose::Own && e.request.method() == Some(&Method::Update);
        // The request is shared between the entry and the machine: counted once.
        let held = e.tx.held_bytes();
        let owner = TimerRef::Client(key.to_owned());
        match deadline {
            Some(at) if !terminated => self.timers.set(owner, at),
            _ => self.timers.cancel(&owner),
        }
        if terminated {
            self.client.remove(key);
            self.ledger.remove_client(key);
        } else {
            self.ledger.set_client(key, held);
        }
        if own_refresh && failure.is_some() {
            // RFC 4028 §10: a refresh that times out ends the session.
            self.terminate(now, call, EndReason::SessionExpired, media);
            return;
        }
        if let Some(timer) = failure {
            self.client_failed(now, call, side, purpose, timer, media);
        }
    }
}
