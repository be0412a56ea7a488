//! The UAC side: requests the SBC sends on a leg (relayed or its own: ACK, PRACK, CANCEL, BYE)
//! and what the answers to the call's INVITE and to relayed requests do.

use super::*;

/// A request to send on a new client transaction.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The request (an INVITE gets an INVITE client transaction, RFC 3261 §17.1.1).
    pub(super) bytes: Bytes,
    pub(super) peer: Peer,
    /// The call it belongs to; None for relays outside any call.
    pub(super) call: Option<CallId>,
    /// The leg it goes out on.
    pub(super) side: Side,
    pub(super) purpose: Purpose,
}

impl B2bua {
    /// Drains client transaction `id` into the outputs; a failure it reports goes to call
    /// policy (`failover.rs`).
    pub(super) fn after_client(&mut self, now: Instant, id: TxId, media: &mut MediaTable) {
        let failure = self.tx.drain_client(
            id,
            Sink {
                transmits: &mut self.transmits,
                timers: &mut self.timers,
                ledger: &mut self.ledger,
                retransmissions_sent: &mut self.retransmissions_sent,
            },
        );
        if let Some(failure) = failure {
            self.client_failed(now, failure, media);
        }
    }

    /// Makes client transaction `ck` the call's INVITE on its callee leg `side` (a new call, a
    /// failover, a redirect or an authenticated retry): what CANCEL, glare and the caller's
    /// server transaction refer to.
    pub(super) fn bind_initial(&mut self, call: CallId, side: Side, ck: TxId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.initial_client = Some(ck);
        c.leg_mut(side).invite_out = Some(ck);
        if let Some(e) = c.initial_server.and_then(|k| self.tx.server_mut(k)) {
            e.relay = Some(ck);
        }
    }

    /// Starts a client transaction for `out` and sends its request. Returns its handle (None
    /// only if our own message does not parse: a builder bug, counted, nothing sent).
    pub(super) fn send_client(
        &mut self,
        now: Instant,
        out: Outgoing,
        media: &mut MediaTable,
    ) -> Option<TxId> {
        let Outgoing {
            bytes,
            peer,
            call,
            side,
            purpose,
        } = out;
        // What the transaction needs now is read off the bytes; the request is parsed only
        // if a later step needs it whole (`KeptRequest::sent`). A request the scan cannot
        // read plainly is parsed at once, as every request was before.
        let request = match SentRequest::scan(&bytes) {
            Some(facts) => {
                debug_assert!(
                    Message::parse(bytes.clone(), &self.parse_limits).is_ok(),
                    "a request the scan reads parses too"
                );
                let branch = facts.branch.clone();
                Some((KeptRequest::sent(bytes.clone(), facts), branch))
            }
            None => Message::parse(bytes.clone(), &self.parse_limits)
                .ok()
                .and_then(|m| {
                    let branch: Box<str> = m.top_branch()?.into();
                    Some((KeptRequest::new(m), branch))
                }),
        };
        let Some((request, branch)) = request else {
            // Our own message failed to parse: a bug in a builder. Do not send garbage.
            self.events.push_back(Event::Dropped {
                reason: "internal_build_error",
            });
            return None;
        };
        let reliable = peer.transport.is_reliable();
        let method = request.method();
        let cancel = *method == Method::Cancel;
        let tx = if *method == Method::Invite {
            CTx::Invite(InviteClient::new(now, bytes, reliable, self.cfg.timers))
        } else {
            CTx::NonInvite(NonInviteClient::new(now, bytes, reliable, self.cfg.timers))
        };
        let trunk = match side {
            Side::Outside => call.and_then(|c| self.calls.get(&c)?.trunk),
            Side::Inside => None,
        };
        let id = self.tx.insert_client(ClientEntry {
            branch,
            cancel,
            tx,
            peer,
            request,
            call,
            side,
            purpose,
            auth_attempts: 0,
            trunk,
        });
        self.after_client(now, id, media);
        Some(id)
    }

    /// Sends CANCEL for the call's initial INVITE on the callee leg.
    pub(super) fn cancel_client(&mut self, now: Instant, call: CallId, media: &mut MediaTable) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(e) = c.initial_client.and_then(|k| self.tx.client_mut(k)) else {
            return;
        };
        // Without the request the INVITE had its final response: too late to cancel (§9.1).
        let Some(invite) = e.request.message() else {
            return;
        };
        let cancel = msg::cancel_for(invite, &mut self.buf);
        if let CTx::Invite(t) = &mut e.tx {
            t.cancel_sent(now);
        }
        let (peer, side) = (e.peer, e.side);
        self.send_client(
            now,
            Outgoing {
                bytes: cancel,
                peer,
                call: Some(call),
                side,
                purpose: Purpose::Own,
            },
            media,
        );
    }

    /// Sends the ACK for the 2xx of INVITE `cseq` on `side` (end-to-end, new branch), kept for
    /// the 2xx's retransmissions for 64·T1 ([`call::KeptAck`]).
    pub(super) fn send_ack(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        cseq: u32,
        body: &[u8],
    ) {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg(side);
        let ack = msg::request(
            &RequestSpec {
                content_type: Some("application/sdp"),
                body,
                ..leg.request(&Method::Ack, local, &branch, cseq, &self.cfg.user_agent)
            },
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        let until = now + self.cfg.timers.timeout();
        c.acks[side_index(side)] = Some(Box::new(call::KeptAck {
            cseq,
            ack: ack.clone(),
            until,
        }));
        self.transmits.push_back(Transmit {
            to: peer,
            data: ack,
        });
        self.timers.set_earliest(TimerRef::Call(call), until);
        self.account_call(call);
    }

    pub(super) fn initial_response(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        status: u16,
        resp: &Message,
        media: &mut MediaTable,
    ) {
        if status == 100 {
            return; // hop-by-hop
        }
        let caller = side.other();
        // Update the callee leg's dialog state first, then act with the borrow released.
        let (server_key, canceled, cancel_pending, late_offer) = {
            let Some(c) = self.calls.get_mut(&call) else {
                // The call is already gone (e.g. cancelled and cleaned up).
                return;
            };
            // A restored call has no INVITE transactions, so no response of one reaches here.
            let Some(server_key) = c.initial_server else {
                return;
            };
            if (101..300).contains(&status) {
                // The newest early dialog (forking, `fork.rs`) is the one the caller sees.
                c.follow_dialog(side, resp);
            }
            if (101..200).contains(&status) {
                if !c.provisional_seen {
                    self.events
                        .push_back(Event::CallProgress { call: call.raw() });
                }
                c.provisional_seen = true;
            } else {
                c.leg_mut(side).invite_out = None;
                // A final response ends the early dialog's reliable provisionals.
                c.pending_rel = None;
            }
            let cancel_pending = std::mem::take(&mut c.cancel_pending) && status < 200;
            if (200..300).contains(&status) && !c.canceled {
                c.state = CallState::Confirmed;
                c.answered_at.get_or_insert(now);
                // Failover and redirect recursion, the only readers of the carrier offer, the
                // relays it was written for and the trunks left, end with the answer (they
                // also need the caller's INVITE, let go with the final response): a call held
                // for minutes need not keep them (issue 16, ~0.4 KB a call).
                c.offer = None;
                c.relays = Vec::new();
                c.next_trunks = Vec::new();
            }
            let late_offer = c
                .initial_client
                .and_then(|k| self.tx.client(k))
                .is_some_and(|e| !e.request.has_body());
            (server_key, c.canceled, cancel_pending, late_offer)
        };
        if (101..200).contains(&status) {
            if cancel_pending {
                self.cancel_client(now, call, media);
            } else if !canceled {
                self.provisional_to_caller(now, call, side, server_key, resp, media);
            }
            return;
        }
        if (200..300).contains(&status) {
            // The offer let go above no longer counts as held.
            self.account_call(call);
            let cseq_callee = resp.cseq().seq;
            if canceled {
                // CANCEL lost the race with the 2xx: the caller got 487; hang up the callee.
                self.send_ack(now, call, side, cseq_callee, b"");
                self.send_bye(now, call, side, media);
                self.finish_call(call, EndReason::Cancelled, media);
                return;
            }
            self.events
                .push_back(Event::CallAnswered { call: call.raw() });
            let timer = self.cfg.session_timer.answered(now, resp);
            self.set_leg_timer(call, side, timer);
            let sent = self.relay_to_caller(
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
            if !late_offer {
                self.send_ack(now, call, side, cseq_callee, b"");
            }
            if let Some(resp_bytes) = sent {
                let ack_other = late_offer.then_some(cseq_callee);
                self.start_2xx_retransmit(now, call, caller, server_key, resp_bytes, ack_other);
            }
            return;
        }
        if !canceled
            && (300..400).contains(&status)
            && side == Side::Outside
            && self.recurse(now, call, resp, media)
        {
            return;
        }
        // A failed target of a followed 3xx: the redirect set's next Contact first
        // (redirect.rs), then what any failure gets.
        if !canceled
            && (400..600).contains(&status)
            && side == Side::Outside
            && self.recurse_after_failure(now, call, status, media)
        {
            return;
        }
        // RFC 3261 §16.7 item 6 style serial forking across trunks: a timeout or server
        // error of this carrier says nothing about the callee; 4xx (other than 408) and 6xx
        // do, and end the call.
        if !canceled
            && (status == 408 || (500..600).contains(&status))
            && side == Side::Outside
            && self.failover(now, call, status, media)
        {
            return;
        }
        // 300-699: the transaction ACKed it; relay the final to the caller (unless cancelled).
        if !canceled {
            if matches!(status, 401 | 407) {
                self.remember_challenge(now, call, side, resp);
            }
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
        }
        let reason = if canceled {
            EndReason::Cancelled
        } else {
            self.note_hangup(call, side);
            EndReason::Rejected(status)
        };
        self.finish_call(call, reason, media);
    }

    /// PRACKs a reliable provisional of the callee on the SBC's own behalf.
    pub(super) fn send_prack(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        rseq: u32,
        invite_cseq: u32,
        media: &mut MediaTable,
    ) {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg_mut(side);
        leg.local_cseq += 1;
        let rack = format!("{rseq} {invite_cseq} INVITE");
        let prack = msg::request(
            &RequestSpec {
                extra: &[("RAck", rack.as_str())],
                shaping: None,
                ..leg.request(
                    &Method::Prack,
                    local,
                    &branch,
                    leg.local_cseq,
                    &self.cfg.user_agent,
                )
            },
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        self.send_client(
            now,
            Outgoing {
                bytes: prack,
                peer,
                call: Some(call),
                side,
                purpose: Purpose::Own,
            },
            media,
        );
    }

    /// Relays the answer to a request relayed for server transaction `server` back to it; for
    /// a call (`call`), with what the answer means for the dialog.
    pub(super) fn relay_response(
        &mut self,
        now: Instant,
        call: Option<CallId>,
        side: Side,
        server: TxId,
        resp: &Message,
        media: &mut MediaTable,
    ) {
        let status = resp.status().map_or(0, |s| s.as_u16());
        if status == 100 {
            return;
        }
        let from = side.other();
        let method = resp.cseq().method.clone();
        let Some(call) = call else {
            if method == Method::Register {
                self.register_response(now, server, status, resp);
            } else {
                self.relay_to_caller(
                    now,
                    ToCaller {
                        call: None,
                        side: from,
                        server,
                    },
                    resp,
                    None,
                    media,
                );
            }
            return;
        };
        if method == Method::Invite
            && status >= 200
            && let Some(c) = self.calls.get_mut(&call)
        {
            c.leg_mut(side).invite_out = None;
        }
        let sent = self.relay_to_caller(
            now,
            ToCaller {
                call: Some(call),
                side: from,
                server,
            },
            resp,
            None,
            media,
        );
        // A refused re-offer (a T.38 switch answered 488/606): the previous session stays.
        if matches!(method, Method::Invite | Method::Update) && status >= 300 {
            self.fall_back(now, call, from, media);
        }
        if matches!(method, Method::Invite | Method::Update) && (200..300).contains(&status) {
            // The peer answered a request relayed on its leg: its session interval from now.
            let current = self.calls.get(&call).and_then(|c| c.leg(side).session);
            let timer = self
                .cfg
                .session_timer
                .answered(now, resp)
                .or(current.map(|t| session_timer::LegTimer {
                    last: now,
                    refreshing: false,
                    ..t
                }));
            self.set_leg_timer(call, side, timer);
        }
        match method {
            Method::Bye if status >= 200 => self.finish_call(call, EndReason::Bye, media),
            Method::Invite if (200..300).contains(&status) => {
                // re-INVITE answered: ACK end-to-end on this leg now unless the offer comes
                // in the ACK (late offer), and retransmit the 2xx to the other leg until ACKed.
                let late = self
                    .tx
                    .server(server)
                    .is_some_and(|e| !e.request.has_body());
                let cseq_here = resp.cseq().seq;
                if !late {
                    self.send_ack(now, call, side, cseq_here, b"");
                }
                if let Some(bytes) = sent {
                    let cseq_there = self.tx.server(server).map_or(0, |e| e.request.cseq());
                    self.start_2xx_retransmit(
                        now,
                        call,
                        from,
                        server,
                        bytes,
                        late.then_some(cseq_here),
                    );
                    if let Some(c) = self.calls.get_mut(&call)
                        && let Some(p) = c.pending_2xx.as_mut()
                    {
                        p.cseq = cseq_there;
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn send_bye(
        &mut self,
        now: Instant,
        call: CallId,
        side: Side,
        media: &mut MediaTable,
    ) {
        let branch = self.rng.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let local = c.leg(side).local;
        let leg = c.leg_mut(side);
        leg.local_cseq += 1;
        let bye = msg::request(
            &leg.request(
                &Method::Bye,
                local,
                &branch,
                leg.local_cseq,
                &self.cfg.user_agent,
            ),
            None,
            &[],
            &mut self.buf,
        );
        let peer = leg.peer;
        self.send_client(
            now,
            Outgoing {
                bytes: bye,
                peer,
                call: Some(call),
                side,
                purpose: Purpose::Own,
            },
            media,
        );
    }
}
