//! Requests inside a call's dialogs: CANCEL, ACK and everything relayed leg to leg.

use super::*;

impl B2bua {
    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        media: &mut MediaTable,
    ) {
        // The CANCEL matches the INVITE server transaction with the same branch (§9.2).
        let target = self.tx.find_invite_of(&key).and_then(|id| {
            let e = self.tx.server(id)?;
            match &e.tx {
                STx::Invite(t) if t.state() == InviteServerState::Proceeding => Some((id, e.call)),
                _ => None,
            }
        });
        let Some((invite_key, call)) = target else {
            self.reject(now, peer, key, msg, Refusal::CallDoesNotExist);
            return;
        };
        // 200 for the CANCEL on its own transaction, then 487 for the INVITE (§9.2).
        let to_tag = self.tx.server(invite_key).and_then(|e| e.to_tag.clone());
        let ok = msg::response(
            &msg,
            &ResponseSpec {
                status: StatusCode::OK.as_u16(),
                reason: StatusCode::OK.standard_phrase(),
                to_tag: to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &[],
            },
            None,
            &[],
            &mut self.buf,
        );
        let mut t = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        t.send_response(now, StatusCode::OK.as_u16(), ok);
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx: STx::NonInvite(t),
            peer,
            request: KeptRequest::new(msg),
            call,
            to_tag,
            relay: None,
            merged: None,
        });
        self.after_server(key);
        self.final_on_server(now, invite_key, Refusal::RequestTerminated);
        let Some(call_id) = call else { return };
        self.note_hangup(call_id, peer.side);
        let relay = self.tx.server(invite_key).and_then(|e| e.relay);
        let initial = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.initial_server == Some(invite_key));
        if initial {
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.canceled = true;
            }
            self.release_media(call_id, media);
            let provisional = self.calls.get(&call_id).is_some_and(|c| c.provisional_seen);
            if provisional {
                self.cancel_client(now, call_id, media);
            } else if let Some(c) = self.calls.get_mut(&call_id) {
                // A CANCEL may only follow a provisional (§9.1); send it when one arrives.
                c.cancel_pending = true;
            }
        } else if let Some(rk) = relay {
            // A cancelled re-INVITE: cancel the relayed one too.
            // Without the request the relayed INVITE had its final response: too late (§9.1).
            if let Some(e) = self.tx.client(rk)
                && let Some(invite) = e.request.message()
            {
                let cancel = msg::cancel_for(invite, &mut self.buf);
                let (peer, side) = (e.peer, e.side);
                if let Some(CTx::Invite(t)) = self.tx.client_mut(rk).map(|e| &mut e.tx) {
                    t.cancel_sent(now);
                }
                self.send_client(
                    now,
                    Outgoing {
                        bytes: cancel,
                        peer,
                        call: Some(call_id),
                        side,
                        purpose: Purpose::Own,
                    },
                    media,
                );
            }
        }
    }

    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        peer: Peer,
        invite: Option<TxId>,
        msg: Message,
        media: &mut MediaTable,
    ) {
        if let Some(key) = invite
            && let Some(e) = self.tx.server_mut(key)
            && let STx::Invite(t) = &mut e.tx
        {
            let absorbed = t.handle_ack(now);
            self.after_server(key);
            if absorbed == Absorbed::Yes {
                return;
            }
        }
        // An ACK for a 2xx: the dialog's business (§13.3.1.4).
        let Some(tag) = msg.to_tag() else {
            self.events.push_back(Event::Dropped {
                reason: "stray_ack",
            });
            return;
        };
        let Some((call, side)) = self.dialogs.get(msg.call_id(), tag, &self.calls) else {
            self.events.push_back(Event::Dropped {
                reason: "stray_ack",
            });
            return;
        };
        // The late-offer answer in an ACK commits media: only from the leg's peer.
        if side != peer.side || self.check_in_dialog(&peer, &msg, call, side).is_err() {
            return;
        }
        let cseq = msg.cseq().seq;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(p) = c
            .pending_2xx
            .as_ref()
            .filter(|p| p.leg == side && p.cseq == cseq)
        else {
            return; // ACK retransmission or late: nothing to do.
        };
        let ack_other = p.ack_other_cseq;
        c.pending_2xx = None;
        // A late-offer answer in the ACK changes the media state.
        self.touch(call);
        let other = side.other();
        if let Some(other_cseq) = ack_other {
            // Late offer: this ACK carries the answer for the other leg's 2xx. An answer that
            // cannot be anchored ends the call (the ACK itself cannot be refused).
            let mut body = Vec::new();
            let answer = match body::classify(&msg, &Method::Ack) {
                Ok(body::Body::Sdp(sdp)) => Ok(sdp),
                Ok(_) => Err("sdp_missing_answer"),
                Err(r) => Err(r.as_str()),
            };
            let result =
                answer.and_then(|sdp| self.late_answer(now, call, side, sdp, media, &mut body));
            self.send_ack(now, call, other, other_cseq, &body);
            if let Err(reason) = result {
                self.border_refusal(reason);
                self.terminate(now, call, EndReason::Rejected(488), media);
            }
        }
        self.account_call(call);
    }

    pub(super) fn in_dialog(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        call: CallId,
        media: &mut MediaTable,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.touch(call);
        let from = peer.side;
        let to = from.other();
        let is_invite = method == Method::Invite;
        // A PRACK acknowledges one of our reliable provisionals: stop retransmitting it and
        // PRACK the callee's original (RFC 3262 §4), mapping RAck to the callee's numbers.
        let mut extra_owned: Vec<(&str, String)> = Vec::new();
        if method == Method::Prack {
            let rack = msg.headers().rack().ok().flatten();
            let mapped = self.calls.get_mut(&call).and_then(|c| {
                let rack = rack?;
                let theirs = c.rseq_map.iter().find(|(ours, _)| *ours == rack.rseq)?.1;
                if c.pending_rel.as_ref().is_some_and(|p| p.rseq == rack.rseq) {
                    c.pending_rel = None;
                }
                let invite = self.tx.client(c.initial_client?)?;
                Some(format!("{theirs} {} INVITE", invite.request.cseq()))
            });
            match mapped {
                Some(v) => extra_owned.push(("RAck", v)),
                None => {
                    self.reject(now, peer, key, msg, Refusal::CallDoesNotExist);
                    return;
                }
            }
        }
        {
            let Some(c) = self.calls.get(&call) else {
                return;
            };
            // RFC 3261 §14.2: a re-INVITE while our own INVITE on this leg is pending → 491.
            if is_invite && c.leg(from).invite_out.is_some() {
                self.reject(now, peer, key, msg, Refusal::RequestPending);
                return;
            }
            if is_invite && c.state != CallState::Confirmed {
                self.reject(now, peer, key, msg, Refusal::RequestPending);
                return;
            }
        }
        if matches!(method, Method::Invite | Method::Update)
            && let Some(min) = self.cfg.session_timer.too_brief(&msg)
        {
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
        if method == Method::Update && msg.body().is_empty() {
            // A session refresh (or target refresh) concerns this leg only: answered here.
            self.answer_refresh(now, peer, key, msg, call);
            return;
        }
        let to_tag = msg.to_tag().map(str::to_owned);
        let tx = if is_invite {
            let trying = self.trying(&msg);
            STx::Invite(InviteServer::new(
                trying,
                peer.transport.is_reliable(),
                self.cfg.timers,
            ))
        } else {
            STx::NonInvite(NonInviteServer::new(
                peer.transport.is_reliable(),
                self.cfg.timers,
            ))
        };
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx,
            peer,
            request: KeptRequest::new(msg.clone()),
            call: Some(call),
            to_tag,
            relay: None,
            merged: None,
        });
        self.after_server(key);

        // SDP in a re-INVITE or UPDATE is a new offer: update the relay, rewrite for the other leg.
        // Other bodies cross only if allowlisted for the method (`body.rs`).
        let mut body_out = Vec::new();
        let mut content_type = None;
        let classified = match body::classify(&msg, &method) {
            Ok(b) => b,
            Err(r) => {
                self.refuse_body(now, key, &method, r);
                return;
            }
        };
        let offer = match &classified {
            body::Body::Sdp(sdp) => Some(*sdp),
            _ => None,
        };
        // DTMF in INFO from a side that signals it so, toward one that takes RFC 4733: answered
        // here, the digit handed to the relay (`dtmf_interwork.rs`).
        if method == Method::Info
            && let body::Body::Other { content_type, body } = &classified
            && self.info_dtmf(now, key, call, from, content_type, body)
        {
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // Target refresh (§12.2.2): a new Contact becomes the leg's remote target; NAT'd peers
        // are still reached at their observed address (`peer`).
        if matches!(method, Method::Invite | Method::Update)
            && let Some(ct) = first_contact(&msg)
        {
            c.leg_mut(from).remote_target = ct;
        }
        peer_binding::repoint(c.leg_mut(from), &peer);
        if let Some(sdp_body) = offer {
            if let Err(refusal) = self.reoffer(now, call, from, sdp_body, media, &mut body_out) {
                self.final_on_server(now, key, refusal);
                return;
            }
            content_type = Some("application/sdp");
        } else if let body::Body::Other {
            content_type: ct,
            body,
        } = &classified
        {
            body_out.extend_from_slice(body);
            content_type = Some(ct.as_str());
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // Credentials answering a relayed challenge cross with the request (in-dialog, the
        // Request-URI differs per leg: only for challengers that check the digest alone).
        let passthrough = c
            .trunk
            .and_then(|t| self.cfg.trunks.get(t.index()))
            .is_some_and(|t| t.auth == TrunkAuth::Passthrough);
        if to == Side::Inside || passthrough {
            extra_owned.extend(auth_passthrough::credential_headers(&msg, None));
        }
        let branch = self.rng.branch();
        let local = c.leg(to).local;
        let leg = c.leg_mut(to);
        leg.local_cseq += 1;
        let cseq = leg.local_cseq;
        let target_refresh = matches!(
            method,
            Method::Invite | Method::Update | Method::Refer | Method::Notify
        );
        if matches!(method, Method::Invite | Method::Update) {
            // The SBC's own extensions and session interval on this leg, not the peer's.
            let timer = self.cfg.session_timer.enabled;
            extra_owned.push(("Supported", extensions::supported_value(timer)));
            let current = leg.session.as_ref();
            extra_owned.extend(self.cfg.session_timer.request_headers(current));
        }
        let req = msg::request(
            &RequestSpec {
                method: &method,
                ruri: &leg.remote_target,
                local,
                branch: &branch,
                max_forwards: msg.max_forwards().map_or(70, forwarded_max_forwards),
                routes: &leg.route_set,
                from: &leg.local_hdr,
                to: &leg.remote_hdr,
                call_id: &leg.call_id,
                cseq,
                contact: target_refresh,
                user_agent: &self.cfg.user_agent,
                content_type,
                body: &body_out,
                extra: &extra_owned
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect::<Vec<_>>(),
                shaping: None,
            },
            Some(msg.headers()),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let peer_to = leg.peer;
        if method == Method::Bye {
            self.note_hangup(call, from);
            // The call is over for both sides whatever the other leg answers.
            self.release_media(call, media);
            // RFC 3261 §15.1.2: a BYE on an early dialog leaves the INVITE pending; it gets
            // 487, else its server transaction (no timer in Proceeding) would stay forever.
            if let Some(c) = self.calls.get(&call)
                && c.state != CallState::Confirmed
                && let Some(key) = c.initial_server
            {
                self.final_on_server(now, key, Refusal::RequestTerminated);
            }
        }
        let sent = self.send_client(
            now,
            Outgoing {
                bytes: req,
                peer: peer_to,
                call: Some(call),
                side: to,
                purpose: Purpose::Relay { server: key },
            },
            media,
        );
        let Some(ck) = sent else {
            return;
        };
        if is_invite && let Some(c) = self.calls.get_mut(&call) {
            c.leg_mut(to).invite_out = Some(ck);
        }
        if let Some(e) = self.tx.server_mut(key) {
            e.relay = Some(ck);
        }
    }
}
