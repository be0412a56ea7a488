//! Dispatch of every received message to the handler that owns it.

use super::*;

impl B2bua {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: Message,
        media: &mut MediaTable,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let found = self.tx.find_server(&msg);
        if method == Method::Ack {
            self.on_ack(now, peer, found, msg, media);
            return;
        }
        if let Some(id) = found
            && let Some(e) = self.tx.server_mut(id)
        {
            self.retransmissions_received += 1;
            match &mut e.tx {
                STx::Invite(t) => {
                    t.handle_retransmission();
                }
                STx::NonInvite(t) => t.handle_retransmission(),
            }
            self.tx.resending(TimerRef::Server(id));
            self.after_server(id);
            self.tx.resent();
            return;
        }
        let key = ServerKey::of(&msg);
        // Everything below opens a transaction: not above the hard caps.
        if self.refuse_over_caps(peer, &msg) {
            return;
        }
        if method == Method::Cancel {
            self.on_cancel(now, peer, key, msg, media);
            return;
        }
        // RFC 3261 §16.3 item 2 / §8.2: Max-Forwards 0 cannot go further. Only an OPTIONS
        // outside a dialog stops here anyway (the SBC answers it itself, §11).
        let answered_here = method == Method::Options && msg.to_tag().is_none();
        if msg.max_forwards() == Some(0) && !answered_here {
            self.reject(now, peer, key, msg, Refusal::TooManyHops);
            return;
        }
        // §8.2.2.3: an extension the SBC does not implement on this leg cannot be required.
        let unsupported = extensions::unsupported(&msg, self.cfg.session_timer.enabled);
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            self.reject_with(
                now,
                peer,
                key,
                msg,
                Refusal::BadExtension,
                &[("Unsupported", &list)],
            );
            return;
        }
        let dialog = msg
            .to_tag()
            .map(|tag| self.dialogs.get(msg.call_id(), tag, &self.calls));
        if let Some(dialog) = dialog {
            match dialog {
                Some((call, side))
                    if side == peer.side
                        && self.check_in_dialog(&peer, &msg, call, side).is_ok() =>
                {
                    self.in_dialog(now, peer, key, msg, call, media);
                }
                _ => self.reject(now, peer, key, msg, Refusal::CallDoesNotExist),
            }
            return;
        }
        // Digest authentication of the PBX's new requests, before admission control.
        let Some(msg) = self.authenticate_pbx(now, peer, &key, msg) else {
            return;
        };
        match method {
            // Draining: no new call from either side, before any other check holds state.
            Method::Invite if self.refuse_new_call_draining(peer, &msg) => {}
            Method::Invite => {
                if let Some(min) = self.cfg.session_timer.too_brief(&msg) {
                    // RFC 4028 §8.1 (as UAS): too short a session interval.
                    let min = min.to_string();
                    self.reject_with(
                        now,
                        peer,
                        key,
                        msg,
                        Refusal::SessionIntervalTooSmall,
                        &[("Min-SE", &min)],
                    );
                    return;
                }
                if let Some(tag) = msg.from_tag()
                    && self
                        .tx
                        .merged_with(msg.call_id(), tag, msg.cseq().seq)
                        .is_some()
                {
                    self.reject(now, peer, key, msg, Refusal::LoopDetected);
                    return;
                }
                // The trunk's limits before the global rate: calls a trunk refuses do not use
                // up the rate every other trunk's calls need.
                let plan = match self.admit_calls() {
                    Some(limit) => Err(NotAdmitted::Limit(limit)),
                    None => match self.resume_plan(now, &peer, &msg) {
                        // An auth retry continues an attempt already admitted.
                        Some(resumed) => Ok(resumed),
                        None => self.plan(now, &peer, &msg).and_then(|plan| {
                            self.admit_rate(now)
                                .map_or(Ok(plan), |l| Err(NotAdmitted::Limit(l)))
                        }),
                    },
                };
                match plan {
                    Ok(plan) => self.new_call(now, peer, key, msg, plan, media),
                    Err(NotAdmitted::Limit(limit)) => {
                        // RFC 3261 §21.5.4: 503 with Retry-After; the caller may try again
                        // later (a PBX typically fails over to another route meanwhile).
                        // Stateless (`caps.rs`): a flood of refused calls holds nothing.
                        self.events.push_back(Event::AdmissionRejected {
                            from: peer.side,
                            limit,
                        });
                        self.record_refusal(&msg, peer.side, 503);
                        self.refuse_statelessly(peer, &msg);
                    }
                    Err(NotAdmitted::NoRoute) => {
                        self.events.push_back(Event::NoRoute);
                        self.record_refusal(&msg, peer.side, 404);
                        self.reject(now, peer, key, msg, Refusal::NotFound);
                    }
                }
                // The call counts itself now (or was not set up): the places admission held
                // go back.
                self.release_held();
            }
            Method::Options => self.answer_options(now, peer, key, msg),
            Method::Bye | Method::Prack | Method::Update | Method::Info | Method::Notify => {
                self.reject(now, peer, key, msg, Refusal::CallDoesNotExist);
            }
            Method::Message => self.relay_standalone(now, peer, key, msg, media),
            Method::Register => self.on_register(now, peer, key, msg, media),
            Method::Subscribe | Method::Publish | Method::Refer => {
                self.reject(now, peer, key, msg, Refusal::MethodNotAllowed);
            }
            _ => self.reject(now, peer, key, msg, Refusal::NotImplemented),
        }
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: Message,
        media: &mut MediaTable,
    ) {
        let Some(status) = msg.status().map(|s| s.as_u16()) else {
            return;
        };
        // The parser kept where the top Via's branch is: no second decoding of the Via.
        let Some(branch) = msg.top_branch() else {
            self.events.push_back(Event::Dropped {
                reason: "stray_response",
            });
            return;
        };
        let found = self
            .tx
            .find_client(branch, msg.cseq().method == Method::Cancel);
        let Some((key, e)) = found.and_then(|id| Some((id, self.tx.client(id)?))) else {
            self.events.push_back(Event::Dropped {
                reason: "stray_response",
            });
            return;
        };
        if !self.response_from_peer(e, &peer) {
            self.events.push_back(Event::PeerMismatch {
                side: e.side,
                kind: PeerMismatch::Response,
            });
            return;
        }
        let Some(e) = self.tx.client_mut(key) else {
            return;
        };
        let pass = match &mut e.tx {
            CTx::Invite(t) => {
                let request = &e.request;
                let buf = &mut self.buf;
                // Called for a first final response only, while the request is still whole;
                // only then is a request the SBC sent parsed (`KeptRequest::sent`).
                t.handle_response(now, status, || {
                    request
                        .message()
                        .map(|i| msg::ack_for_non2xx(i, &msg, buf))
                        .unwrap_or_default()
                })
            }
            CTx::NonInvite(t) => t.handle_response(now, status),
        };
        let (call, side, purpose, is_invite) =
            (e.call, e.side, e.purpose, matches!(e.tx, CTx::Invite(_)));
        // A challenge from the trunk: keep what the retry is built from before the
        // transaction may be removed.
        let trunk = e.trunk;
        // Challenges of an `auth = sbc` trunk are the SBC's to answer (403 without
        // credentials); the others cross (auth_passthrough.rs).
        let sbc_answers = trunk
            .and_then(|t| self.cfg.trunks.get(t.index()))
            .is_none_or(|t| t.auth == TrunkAuth::Sbc);
        let challenged = (matches!(status, 401 | 407) && side == Side::Outside && sbc_answers)
            .then(|| e.request.message().cloned())
            .flatten()
            .map(|request| Challenged {
                request,
                peer: e.peer,
                attempts: e.auth_attempts,
                trunk,
                call,
                side,
                purpose,
            });
        self.after_client(now, key, media);
        if !pass {
            return;
        }
        if let Some(challenged) = challenged {
            if !self.retry_with_credentials(now, &challenged, status, &msg, media) {
                self.auth_failed(now, call, side, purpose, media);
            }
            return;
        }
        if let Some(call) = call {
            self.touch(call);
        }
        let Some(call) = call else {
            // Outside any call: a relayed MESSAGE or REGISTER.
            if let Purpose::Relay { server } = purpose {
                self.relay_response(now, None, side, server, &msg, media);
            }
            return;
        };
        if is_invite
            && (200..300).contains(&status)
            && purpose == Purpose::Initial
            && self.late_fork_2xx(now, call, side, &msg, media)
        {
            return;
        }
        if is_invite && (200..300).contains(&status) {
            // A 2xx retransmission after we ACKed: ACK again (§13.2.2.4).
            if let Some(c) = self.calls.get(&call)
                && let Some(kept) = &c.acks[side_index(side)]
                && kept.cseq == msg.cseq().seq
            {
                let to = c.leg(side).peer;
                self.transmits.push_back(Transmit {
                    to,
                    data: kept.ack.clone(),
                });
                return;
            }
        }
        match purpose {
            Purpose::Own if msg.cseq().method == Method::Update => {
                self.refresh_answered(now, call, side, status, &msg, media);
            }
            Purpose::Own => {}
            Purpose::Initial => self.initial_response(now, call, side, status, &msg, media),
            Purpose::Relay { server } => {
                self.relay_response(now, Some(call), side, server, &msg, media)
            }
        }
    }
}
