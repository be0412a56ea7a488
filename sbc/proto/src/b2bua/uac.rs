//! The UAC side: requests the SBC sends on a leg (relayed or its own: ACK, PRACK, CANCEL, BYE)
//! and what the answers to the call's INVITE and to relayed requests do.

use super::*;

impl B2bua {
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    pub(super) fn send_client(
        &mut self,
        now: Instant,
        key: String,
        bytes: Bytes,
        peer: Peer,
        call: u64,
        side: Side,
        purpose: Purpose,
        invite: bool,
        media: &mut dyn MediaControl,
    ) {
        let Ok(request) = Message::parse(bytes.clone(), &self.limits) else {
            // Our own message failed to parse: a bug in a builder. Do not send garbage.
            self.events.push_back(Event::Dropped {
                reason: "internal_build_error",
            });
            return;
        };
        let reliable = peer.transport.is_reliable();
        let tx = if invite {
            CTx::Invite(InviteClient::new(now, bytes, reliable, self.cfg.timers))
        } else {
            CTx::NonInvite(NonInviteClient::new(now, bytes, reliable, self.cfg.timers))
        };
        let trunk = match side {
            Side::Outside => self.calls.get(&call).and_then(|c| c.trunk),
            Side::Inside => None,
        };
        self.client.insert(
            key.clone(),
            ClientEntry {
                tx,
                peer,
                request,
                call,
                side,
                purpose,
                auth_attempts: 0,
                trunk,
            },
        );
        self.after_client(now, &key, media);
    }

    /// Sends CANCEL for the call's initial INVITE on the callee leg.
    pub(super) fn cancel_client(&mut self, now: Instant, call: u64, media: &mut dyn MediaControl) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let key = c.initial_client.clone();
        let Some(e) = self.client.get_mut(&key) else {
            return;
        };
        let cancel = msg::cancel_for(&e.request, &mut self.buf);
        if let CTx::Invite(t) = &mut e.tx {
            t.cancel_sent(now);
        }
        let (peer, side) = (e.peer, e.side);
        let ck = format!("{}|CANCEL", key.trim_end_matches("|INVITE"));
        self.send_client(
            now,
            ck,
            cancel,
            peer,
            call,
            side,
            Purpose::Own,
            false,
            media,
        );
    }

    /// Sends the ACK for the 2xx of INVITE `cseq` on `side` (end-to-end, new branch).
    pub(super) fn send_ack(&mut self, call: u64, side: Side, cseq: u32, body: &[u8]) {
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
        c.acks[side_index(side)] = Some((cseq, ack.clone()));
        self.transmits.push_back(Transmit {
            to: peer,
            data: ack,
        });
        self.account_call(call);
    }

    pub(super) fn initial_response(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        status: u16,
        resp: &Message,
        media: &mut dyn MediaControl,
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
            if (101..300).contains(&status) {
                // The newest early dialog (forking, `fork.rs`) is the one the caller sees.
                c.follow_dialog(side, resp);
            }
            if (101..200).contains(&status) {
                if !c.provisional_seen {
                    self.events.push_back(Event::CallProgress { call });
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
            }
            let late_offer = self
                .client
                .get(&c.initial_client)
                .is_some_and(|e| e.request.body().is_empty());
            (
                c.initial_server.clone(),
                c.canceled,
                cancel_pending,
                late_offer,
            )
        };
        if (101..200).contains(&status) {
            if cancel_pending {
                self.cancel_client(now, call, media);
            } else if !canceled {
                self.provisional_to_caller(now, call, side, &server_key, status, resp, media);
            }
            return;
        }
        if (200..300).contains(&status) {
            let cseq_callee = resp.cseq().seq;
            if canceled {
                // CANCEL lost the race with the 2xx: the caller got 487; hang up the callee.
                self.send_ack(call, side, cseq_callee, b"");
                self.send_bye(now, call, side, media);
                self.finish_call(call, EndReason::Cancelled, media);
                return;
            }
            self.events.push_back(Event::CallAnswered { call });
            let timer = self.cfg.session_timer.answered(now, resp);
            self.set_leg_timer(call, side, timer);
            let sent =
                self.relay_to_caller(now, call, caller, &server_key, status, resp, None, media);
            if !late_offer {
                self.send_ack(call, side, cseq_callee, b"");
            }
            if let Some(resp_bytes) = sent {
                let ack_other = late_offer.then_some(cseq_callee);
                self.start_2xx_retransmit(now, call, caller, &server_key, resp_bytes, ack_other);
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
            self.relay_to_caller(now, call, caller, &server_key, status, resp, None, media);
        }
        let reason = if canceled {
            EndReason::Cancelled
        } else {
            EndReason::Rejected(status)
        };
        self.finish_call(call, reason, media);
    }

    /// PRACKs a reliable provisional of the callee on the SBC's own behalf.
    pub(super) fn send_prack(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        rseq: u32,
        invite_cseq: u32,
        media: &mut dyn MediaControl,
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
        let key = client_key(&branch, false);
        self.send_client(
            now,
            key,
            prack,
            peer,
            call,
            side,
            Purpose::Own,
            false,
            media,
        );
    }

    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    pub(super) fn relay_response(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        server: &str,
        status: u16,
        resp: &Message,
        media: &mut dyn MediaControl,
    ) {
        if status == 100 {
            return;
        }
        let from = side.other();
        let method = resp.cseq().method.clone();
        if method == Method::Register && call == STANDALONE {
            self.register_response(now, server, status, resp, media);
            return;
        }
        if method == Method::Invite
            && status >= 200
            && let Some(c) = self.calls.get_mut(&call)
        {
            c.leg_mut(side).invite_out = None;
        }
        let sent = self.relay_to_caller(now, call, from, server, status, resp, None, media);
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
                    .server
                    .get(server)
                    .is_some_and(|e| e.request.body().is_empty());
                let cseq_here = resp.cseq().seq;
                if !late {
                    self.send_ack(call, side, cseq_here, b"");
                }
                if let Some(bytes) = sent {
                    let cseq_there = self.server.get(server).map_or(0, |e| e.request.cseq().seq);
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
        call: u64,
        side: Side,
        media: &mut dyn MediaControl,
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
            client_key(&branch, false),
            bye,
            peer,
            call,
            side,
            Purpose::Own,
            false,
            media,
        );
    }
}
