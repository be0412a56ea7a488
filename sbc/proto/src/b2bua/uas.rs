//! The UAS side: answers the SBC sends on a server transaction, by itself or relayed from the
//! other leg, and the 2xx / reliable-provisional retransmission they start.

use super::*;

/// Methods the SBC accepts (Allow header).
pub(super) const ALLOW: &str =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, MESSAGE, NOTIFY, REFER";

/// Where a response from one leg is relayed: the caller's server transaction.
#[derive(Debug, Clone, Copy)]
pub(super) struct ToCaller {
    /// The call, if the request was part of one.
    pub(super) call: Option<CallId>,
    /// The side the request came from.
    pub(super) side: Side,
    pub(super) server: TxId,
}

impl B2bua {
    /// Drains server transaction `id` into the outputs (see `transactions.rs`).
    pub(super) fn after_server(&mut self, id: TxId) {
        self.tx.drain_server(
            id,
            Sink {
                transmits: &mut self.transmits,
                timers: &mut self.timers,
                ledger: &mut self.ledger,
                retransmissions_sent: &mut self.retransmissions_sent,
            },
        );
    }

    /// Answers a request with a final response on a new server transaction (so that its
    /// retransmissions get the same answer).
    pub(super) fn reject(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        refusal: Refusal,
    ) {
        let extra: &[(&str, &str)] = if refusal == Refusal::MethodNotAllowed {
            &[("Allow", ALLOW)]
        } else {
            &[]
        };
        self.reject_with(now, peer, key, msg, refusal, extra);
    }

    /// Answers a request outside any call with `refusal` and `extra` headers.
    pub(super) fn reject_with(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        refusal: Refusal,
        extra: &[(&str, &str)],
    ) {
        let (status, reason) = (refusal.code(), refusal.reason());
        let tag = self.rng.token();
        let resp = msg::response(
            &msg,
            &ResponseSpec {
                status,
                reason,
                to_tag: Some(&tag),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra,
            },
            None,
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let reliable = peer.transport.is_reliable();
        let tx = if msg.method() == Some(&Method::Invite) {
            let trying = self.trying(&msg);
            let mut t = InviteServer::new(trying, reliable, self.cfg.timers);
            // The 100 is not needed when the final goes out at once; drop it.
            t.poll_transmit();
            t.send_response(now, status, resp);
            STx::Invite(t)
        } else {
            let mut t = NonInviteServer::new(reliable, self.cfg.timers);
            t.send_response(now, status, resp);
            STx::NonInvite(t)
        };
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx,
            peer,
            request: KeptRequest::new(msg),
            call: None,
            to_tag: Some(tag),
            relay: None,
            merged: None,
        });
        self.after_server(key);
    }

    pub(super) fn trying(&mut self, msg: &Message) -> Bytes {
        msg::response(
            msg,
            &ResponseSpec {
                status: StatusCode::TRYING.as_u16(),
                reason: StatusCode::TRYING.standard_phrase(),
                to_tag: None,
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[],
            },
            None,
            &[],
            &mut self.buf,
        )
    }

    pub(super) fn answer_options(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
    ) {
        let tag = self.rng.token();
        let supported = extensions::supported_value(self.cfg.session_timer.enabled);
        let capabilities = [
            ("Allow", ALLOW),
            ("Accept", "application/sdp"),
            ("Supported", supported.as_str()),
        ];
        // Draining (`drain.rs`): a peer pinging us must see us as down and fail over.
        let retry = self.draining.map(|s| s.to_string());
        let (status, extra) = match &retry {
            Some(r) => (
                Refusal::ServiceUnavailable.status(),
                vec![("Retry-After", r.as_str())],
            ),
            None => (StatusCode::OK, capabilities.to_vec()),
        };
        let resp = msg::response(
            &msg,
            &ResponseSpec {
                status: status.as_u16(),
                reason: status.standard_phrase(),
                to_tag: Some(&tag),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &extra,
            },
            None,
            &[],
            &mut self.buf,
        );
        let mut t = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        t.send_response(now, status.as_u16(), resp);
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx: STx::NonInvite(t),
            peer,
            request: KeptRequest::new(msg),
            call: None,
            to_tag: Some(tag),
            relay: None,
            merged: None,
        });
        self.after_server(key);
    }

    /// Sends a final response on server transaction `key` (no relayed headers).
    pub(super) fn final_on_server(&mut self, now: Instant, key: TxId, refusal: Refusal) {
        let Some(e) = self.tx.server(key) else {
            return;
        };
        // Gone with the final response: nothing more to answer.
        let Some(request) = e.request.message() else {
            return;
        };
        let (status, reason) = (refusal.code(), refusal.reason());
        // RFC 3261 §21.5.4: a 503 (relay ports or a trunk's port quota exhausted) says when
        // to come back, like the admission limits' 503.
        let retry = self.cfg.retry_after_s.to_string();
        let retry_after = [("Retry-After", retry.as_str())];
        let extra: &[(&str, &str)] = if refusal == Refusal::ServiceUnavailable {
            &retry_after
        } else {
            &[]
        };
        let resp = msg::response(
            request,
            &ResponseSpec {
                status,
                reason,
                to_tag: e.to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra,
            },
            None,
            &[],
            &mut self.buf,
        );
        self.send_on_server(now, key, status, resp);
    }

    pub(super) fn send_on_server(
        &mut self,
        now: Instant,
        key: TxId,
        status: u16,
        resp: Bytes,
    ) -> bool {
        let Some(e) = self.tx.server_mut(key) else {
            return false;
        };
        let sent = match &mut e.tx {
            STx::Invite(t) => t.send_response(now, status, resp),
            STx::NonInvite(t) => t.send_response(now, status, resp),
        };
        self.after_server(key);
        sent
    }

    /// Relays a provisional from the callee. A reliable one (RFC 3262: `Require: 100rel` with
    /// an RSeq) goes to the caller reliably with our own RSeq if the caller supports 100rel,
    /// and is retransmitted until its PRACK; otherwise the SBC PRACKs the callee itself and
    /// relays the provisional as an ordinary one.
    pub(super) fn provisional_to_caller(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        server_key: TxId,
        resp: &Message,
        media: &mut MediaTable,
    ) {
        let caller = side.other();
        let reliable = resp
            .headers()
            .require()
            .filter_map(Result::ok)
            .any(|t| t.trim().eq_ignore_ascii_case("100rel"));
        let rseq = resp.headers().rseq().ok().flatten();
        let (Some(theirs), true) = (rseq, reliable) else {
            self.relay_to_caller(
                now,
                ToCaller {
                    call: Some(call),
                    side: caller,
                    server: server_key,
                },
                resp,
                None,
                media,
            );
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.last_callee_rseq.is_some_and(|last| theirs <= last) {
            return; // a retransmission: the caller has (or gets) ours already
        }
        c.last_callee_rseq = Some(theirs);
        if !c.caller_100rel {
            let invite_cseq = resp.cseq().seq;
            self.send_prack(now, call, side, theirs, invite_cseq, media);
            self.relay_to_caller(
                now,
                ToCaller {
                    call: Some(call),
                    side: caller,
                    server: server_key,
                },
                resp,
                None,
                media,
            );
            return;
        }
        let ours = c.next_rseq;
        c.next_rseq = c.next_rseq.wrapping_add(1);
        c.rseq_map.push((ours, theirs));
        let sent = self.relay_to_caller(
            now,
            ToCaller {
                call: Some(call),
                side: caller,
                server: server_key,
            },
            resp,
            Some(ours),
            media,
        );
        if let (Some(bytes), Some(c)) = (sent, self.calls.get_mut(&call)) {
            let t1 = self.cfg.timers.t1;
            c.pending_rel = Some(Box::new(PendingRel {
                rseq: ours,
                response: bytes,
                next: now + t1,
                interval: t1,
                deadline: now + self.cfg.timers.timeout(),
            }));
            self.timers.set_earliest(TimerRef::Call(call), now + t1);
            self.account_call(call);
        }
    }

    /// Relays a response from the callee leg to the caller's server transaction `key`,
    /// mapping headers and SDP; with `rseq`, as a reliable provisional with that RSeq.
    /// Returns the bytes sent for a 2xx or a reliable provisional (for retransmission).
    pub(super) fn relay_to_caller(
        &mut self,
        now: Instant,
        to: ToCaller,
        resp: &Message,
        rseq: Option<u32>,
        media: &mut MediaTable,
    ) -> Option<Bytes> {
        let ToCaller {
            call,
            side: caller,
            server: key,
        } = to;
        let status = resp.status().map_or(0, |s| s.as_u16());
        let callee = caller.other();
        let mut body = Vec::new();
        let mut content_type = None;
        // Responses carry SDP only (`body.rs`); any other body is dropped.
        let sdp_body = match body::classify(resp, &resp.cseq().method) {
            Ok(body::Body::Sdp(sdp)) if (101..300).contains(&status) => Some(sdp),
            Ok(_) => None,
            Err(r) => {
                self.border_refusal(r.as_str());
                None
            }
        };
        if let Some(sdp_body) = sdp_body {
            // Outside any call (a relayed MESSAGE) there is no media to anchor an SDP in.
            let call = call.filter(|c| self.calls.contains_key(c))?;
            // An answer (or an offer in a 2xx to an offer-less INVITE).
            let result = self.answer(now, call, callee, sdp_body, media, &mut body);
            match result {
                Ok(()) => content_type = Some("application/sdp"),
                Err(p) => {
                    self.border_refusal(p.as_str());
                    body.clear();
                    // No 2xx without an anchored answer; a provisional goes on without SDP.
                    if (200..300).contains(&status) {
                        self.refuse_answer(now, call, caller, key, resp, media);
                        return None;
                    }
                }
            }
        }
        let e = self.tx.server(key)?;
        // Gone with the final response: the caller has its answer (a callee's 2xx
        // retransmission; our own 2xx is resent from `pending_2xx` until the ACK).
        let request = e.request.message()?;
        // The standard phrase: the peer's own can name its systems.
        let reason =
            crate::sip::StatusCode::new(status).map_or("", crate::sip::StatusCode::standard_phrase);
        let local = call
            .and_then(|c| self.calls.get(&c))
            .map_or_else(|| self.cfg.local(caller), |c| c.leg(caller).local);
        // 3xx: the redirect targets, reduced to their numbers at the SBC (`msg.rs`).
        let contacts: Vec<String> = if (300..400).contains(&status) {
            self.relayed_contacts(call, caller, resp, local)
        } else {
            Vec::new()
        };
        let trunk = call.and_then(|c| self.calls.get(&c)?.trunk);
        let challenge = if matches!(status, 401 | 407) && self.challenge_crosses(trunk, callee) {
            self.challenges_relayed += 1;
            auth_passthrough::challenge_headers(resp)
        } else {
            Vec::new()
        };
        let mut extra: Vec<(&str, &str)> =
            contacts.iter().map(|c| ("Contact", c.as_str())).collect();
        extra.extend(challenge.iter().map(|(n, v)| (*n, v.as_str())));
        let rseq_text = rseq.map(|r| r.to_string());
        if let Some(r) = &rseq_text {
            extra.push(("Require", "100rel"));
            extra.push(("RSeq", r.as_str()));
        }
        let (own, leg_timer) = self.answer_extensions(now, request, status, resp);
        extra.extend(own.iter().map(|(n, v)| (*n, v.as_str())));
        let out = msg::response(
            request,
            &ResponseSpec {
                status,
                reason,
                to_tag: e.to_tag.as_deref(),
                contact: ((101..300).contains(&status)).then_some(local),
                user_agent: &self.cfg.user_agent,
                content_type,
                body: &body,
                extra: &extra,
            },
            Some((resp.headers(), local)),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        self.send_on_server(now, key, status, out.clone());
        if let (Some(t), Some(call)) = (leg_timer, call) {
            self.set_leg_timer(call, caller, Some(t));
        }
        ((200..300).contains(&status) || rseq.is_some()).then_some(out)
    }

    pub(super) fn start_2xx_retransmit(
        &mut self,
        now: Instant,
        call: CallId,
        leg: Side,
        _server_key: TxId,
        response: Bytes,
        ack_other_cseq: Option<u32>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let cseq = c
            .initial_server
            .and_then(|k| self.tx.server(k))
            .map_or(0, |e| e.request.cseq());
        let t1 = self.cfg.timers.t1;
        let reliable = c.leg(leg).peer.transport.is_reliable();
        c.pending_2xx = Some(Box::new(Pending2xx {
            leg,
            cseq,
            response,
            // On reliable transports the 2xx is not retransmitted, but the ACK is still awaited.
            next: if reliable {
                now + self.cfg.timers.timeout()
            } else {
                now + t1
            },
            interval: t1,
            deadline: now + self.cfg.timers.timeout(),
            ack_other_cseq,
        }));
        self.timers.set_earliest(
            TimerRef::Call(call),
            now + t1.min(self.cfg.timers.timeout()),
        );
        self.account_call(call);
    }
}
