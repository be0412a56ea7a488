//! When a trunk request fails: failover across a trunk's servers and the route's trunks,
//! authenticated retries after a challenge, and what the caller sees when nothing is left.

use super::*;

/// At most this many authenticated retries per request: one for the first challenge, and one
/// more only when the second challenge says `stale=true` (RFC 7616 §3.3: the nonce expired,
/// the credentials were right).
pub(super) const MAX_AUTH_ATTEMPTS: u8 = 2;

/// A trunk request challenged with 401/407, with what its authenticated retry is built from
/// (kept before its transaction may be removed).
#[derive(Debug)]
pub(super) struct Challenged {
    pub(super) request: Message,
    pub(super) peer: Peer,
    /// Authenticated retries already made for it.
    pub(super) attempts: u8,
    /// The trunk whose credentials answer the challenge.
    pub(super) trunk: Option<TrunkId>,
    pub(super) call: Option<CallId>,
    pub(super) side: Side,
    pub(super) purpose: Purpose,
}

/// Where a call's carrier leg starts afresh (failover, redirect).
#[derive(Debug, Clone, Copy)]
pub(super) struct Restart<'a> {
    /// The trunk (index into the configuration's trunks).
    pub(super) index: TrunkId,
    pub(super) target: Target,
    /// The called number when it is not the caller's (a redirect's target).
    pub(super) called: Option<&'a str>,
    /// The caller's INVITE.
    pub(super) orig: &'a Message,
    /// The offer sent to the carrier.
    pub(super) offer: &'a [u8],
}

impl B2bua {
    /// Moves an outbound call whose INVITE failed with `status` to the next trunk of its
    /// route that is up and admits it: a new dialog there (Call-ID, From tag, CSeq 1, numbers
    /// and headers by that trunk's rules) carrying the same offer. The caller sees nothing but
    /// a longer wait. False when no trunk is left.
    pub(super) fn failover(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        media: &mut MediaTable,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let (Some(from), Some(offer)) = (c.trunk, c.offer.clone()) else {
            return false;
        };
        let Some(orig) = c
            .initial_server
            .and_then(|k| self.tx.server(k))
            .and_then(|e| e.request.message().cloned())
        else {
            return false;
        };
        let mut candidates = c.next_trunks.clone();
        // RFC 3263 §4.3: the trunk's next server first (same trunk: same limits slot, same
        // rules), then the next trunk of the route.
        let next_server = self
            .cfg
            .trunks
            .get(from.index())
            .and_then(|t| t.alternates.get(c.server))
            .copied();
        let (index, server, target, offer) = if let Some(target) = next_server {
            (from, c.server + 1, target, offer)
        } else {
            let mut chosen = None;
            while !candidates.is_empty() {
                let t = candidates.remove(0);
                if !self.trunk_usable(t) {
                    continue;
                }
                // Another trunk, another codec policy: the caller's offer filtered for it; a
                // trunk that takes none of its codecs is skipped.
                let rebuilt = match self.offer_for_trunk(now, call, t, &orig, media) {
                    Ok(o) => o.unwrap_or_else(|| offer.clone()),
                    Err(p) => {
                        self.border_refusal(p.as_str());
                        continue;
                    }
                };
                if self.admit_trunk(now, t).is_none() {
                    chosen = Some((t, rebuilt));
                    break;
                }
            }
            let Some((index, offer)) = chosen else {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.next_trunks.clear();
                }
                return false;
            };
            let Some(target) = self.cfg.trunks.get(index.index()).map(|t| t.target) else {
                return false;
            };
            (index, 0, target, offer)
        };
        if let Some(c) = self.calls.get_mut(&call) {
            c.server = server;
            c.next_trunks = candidates;
            // The redirect set's Contacts were the failed server's carrier's to give.
            c.redirects.forget_set();
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.offer = Some(offer.clone());
        }
        // The offer kept may have another size now.
        self.account_call(call);
        self.events.push_back(Event::Failover {
            call: call.raw(),
            from: from.index(),
            to: index.index(),
            status,
        });
        let restart = Restart {
            index,
            target,
            called: None,
            orig: &orig,
            offer: &offer,
        };
        self.restart_outside(now, call, &restart, media)
    }

    /// The caller's offer (in `orig`) written for trunk `index`: its codec policy and SRTP
    /// policy applied (RTP/AVP or RTP/SAVP with the SBC's fresh `a=crypto` lines for that
    /// trunk, the relay told which streams await keys), the call's relay endpoints and the
    /// carrier leg's origin. None when it cannot be rebuilt that way (no body, no relay yet):
    /// the offer sent before is reused.
    fn offer_for_trunk(
        &mut self,
        now: Instant,
        call: CallId,
        index: TrunkId,
        orig: &Message,
        media: &mut MediaTable,
    ) -> Result<Option<Bytes>, SdpProblem> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(None);
        };
        if orig.body().is_empty() || c.relays.is_empty() {
            return Ok(None);
        }
        let mut desc = super::offer_answer::Description::parse(orig.body(), &self.cfg.sdp)?;
        desc.apply_codecs(&mut c.codecs, &self.cfg, Some(index), c.origin, false)?;
        let mut origin = c.leg(Side::Outside).origin.clone();
        let mut out = Vec::new();
        desc.rewrite(
            &c.relays,
            Side::Outside,
            &mut origin,
            &self.cfg.sdp,
            &mut out,
        )?;
        // The previous trunk's keys and transport belong to the offer it got: this trunk gets
        // its own policy's (a trunk without SRTP gets plain RTP, a mandatory one SRTP).
        c.srtp.reset(Side::Outside);
        let crossing = srtp_policy::Crossing {
            now,
            role: srtp_policy::SdpRole::Offer,
            from: c.origin,
            to: Side::Outside,
            body: orig.body(),
        };
        srtp_policy::negotiate(
            &self.cfg,
            &mut self.rng,
            &mut c.srtp,
            Some(index),
            crossing,
            &mut out,
            Some((&mut *media, c.media)),
        )?;
        // `negotiate` tells the relay nothing when neither side does SRTP: the carrier leg may
        // still be held for the previous trunk's keys.
        if let Some(session) = c.media {
            let mut secure = c.srtp.secure(Side::Outside);
            secure.resize(c.relays.len(), false);
            media
                .expect_crypto(now, session, Side::Outside, &secure)
                .map_err(|_| SdpProblem::Srtp("srtp_relay"))?;
        }
        c.leg_mut(Side::Outside).origin = origin;
        Ok(Some(Bytes::from(out)))
    }

    /// Starts the call's carrier leg afresh toward `target` on trunk `index` (failover,
    /// redirect): a new dialog there (Call-ID, From tag, CSeq 1) whose INVITE is built by that
    /// trunk's rules from the caller's `orig` (with `called` as the called number when given)
    /// and carries `offer`.
    pub(super) fn restart_outside(
        &mut self,
        now: Instant,
        call: CallId,
        restart: &Restart<'_>,
        media: &mut MediaTable,
    ) -> bool {
        let Restart {
            index,
            target,
            called,
            orig,
            offer,
        } = *restart;
        let from = self.calls.get(&call).and_then(|c| c.trunk);
        let local = self.trunk_local(Side::Outside, Some(index));
        let call_id = format!("{}@{}", self.rng.token(), msg::host(local.addr));
        let tag = self.rng.token();
        let branch = self.rng.branch();
        let out = self.build_invite(
            orig,
            &CalleeInvite {
                to: Side::Outside,
                trunk: Some(index),
                target,
                called,
                call_id: &call_id,
                tag: &tag,
                branch: &branch,
                sdp: offer,
            },
        );
        let peer = Peer {
            side: Side::Outside,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: self.trunk_bound(Side::Outside, Some(index)),
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let leg = c.leg_mut(Side::Outside);
        self.dialogs
            .remove(&leg.call_id, leg.local_tag(), call, Side::Outside);
        leg.peer = peer;
        leg.local = local;
        leg.call_id = call_id.clone();
        leg.set_local(out.from_hdr, &tag);
        leg.set_remote(out.to_hdr, None);
        leg.local_cseq = 1;
        leg.remote_target = out.ruri;
        leg.route_set = Vec::new();
        leg.invite_out = None;
        c.trunk = Some(index);
        c.initial_client = None;
        c.acks[side_index(Side::Outside)] = None;
        self.move_call(from, index);
        self.dialogs.insert(&call_id, &tag, call, Side::Outside);
        // The media layer follows: the new server's address, the new trunk's networks and quota.
        if let Some(s) = self.calls.get(&call).and_then(|c| c.media) {
            let peers = self.call_media_peers(call);
            media.set_peers(s, &peers);
        }
        let sent = self.send_client(
            now,
            Outgoing {
                bytes: out.bytes,
                peer,
                call: Some(call),
                side: Side::Outside,
                purpose: Purpose::Initial,
            },
            media,
        );
        if let Some(ck) = sent {
            self.bind_initial(call, Side::Outside, ck);
        }
        true
    }

    /// Resends a challenged trunk request with credentials (RFC 3261 §22.2: same Call-ID,
    /// tags and Request-URI, CSeq + 1, a new branch). Returns false when the challenge cannot
    /// or may not be answered (no usable challenge, realm mismatch, retries used up).
    pub(super) fn retry_with_credentials(
        &mut self,
        now: Instant,
        challenged: &Challenged,
        status: u16,
        resp: &Message,
        media: &mut MediaTable,
    ) -> bool {
        let Challenged {
            ref request,
            peer,
            attempts,
            trunk,
            call,
            side,
            purpose,
        } = *challenged;
        let Some(creds) = self.trunk_credentials(trunk).cloned() else {
            return false;
        };
        let creds = &creds;
        let Some(method) = request.method().cloned() else {
            return false;
        };
        // RFC 3261 §22.1: CANCEL and ACK cannot be challenged; never answer for them.
        if matches!(method, Method::Cancel | Method::Ack) || attempts >= MAX_AUTH_ATTEMPTS {
            return false;
        }
        // A cancelled call is not revived by answering its challenge.
        if purpose == Purpose::Initial
            && call
                .and_then(|c| self.calls.get(&c))
                .is_none_or(|c| c.canceled)
        {
            return false;
        }
        // RFC 3261 §22.2 / §22.3: 401 carries WWW-Authenticate, 407 Proxy-Authenticate.
        let (name, header) = if status == 401 {
            (HeaderName::WwwAuthenticate, "Authorization")
        } else {
            (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
        };
        let challenges: Vec<crate::auth::Challenge> = resp
            .headers()
            .all(name)
            .filter_map(|h| h.value_str())
            .filter_map(|v| crate::sip::Auth::parse(v).ok())
            .filter_map(|a| crate::auth::Challenge::from_auth(&a).ok())
            .collect();
        // RFC 8760 §2.4: the topmost challenge with a supported algorithm.
        let Some(challenge) = challenges.into_iter().next() else {
            return false;
        };
        // A second challenge means the credentials were refused, unless it only says the
        // nonce went stale (RFC 7616 §3.3).
        if attempts >= 1 && !challenge.stale {
            return false;
        }
        let nc = match &mut self.last_nonce {
            Some((n, count)) if *n == challenge.nonce => {
                *count = count.saturating_add(1);
                *count
            }
            _ => {
                self.last_nonce = Some((challenge.nonce.clone(), 1));
                1
            }
        };
        let cnonce = self.rng.token();
        let uri = request.request_uri_str().unwrap_or_default();
        let Ok(answer) = challenge.respond(creds, method.as_str(), uri, nc, &cnonce) else {
            return false;
        };
        let value = answer.header_value();

        // CSeq + 1 in the leg's sequence space (the call may already be gone for our own BYE).
        let mut cseq = request.cseq().seq.saturating_add(1);
        if let Some(c) = call.and_then(|c| self.calls.get_mut(&c)) {
            let leg = c.leg_mut(side);
            leg.local_cseq = leg.local_cseq.max(cseq);
            cseq = leg.local_cseq;
        }
        let branch = self.rng.branch();
        let headers = request.headers();
        let mut ed = crate::sip::Editor::new(request);
        if let Some(i) = headers.positions(HeaderName::Via).next() {
            ed.set_param(i, "branch", Some(branch.as_str().into()));
        }
        let cseq_value = format!("{cseq} {method}");
        if let Some(i) = headers.positions(HeaderName::CSeq).next() {
            ed.replace(i, cseq_value.as_bytes());
        }
        ed.remove_all(HeaderName::Authorization);
        ed.remove_all(HeaderName::ProxyAuthorization);
        ed.append(header, value.as_bytes());
        let mut out = Vec::with_capacity(request.as_bytes().len() + value.len() + 32);
        ed.write(&mut out);
        let bytes = Bytes::from(out);

        let is_invite = method == Method::Invite;
        self.auth_retries += 1;
        let sent = self.send_client(
            now,
            Outgoing {
                bytes,
                peer,
                call,
                side,
                purpose,
            },
            media,
        );
        let Some(ck) = sent else {
            return true;
        };
        if let Some(e) = self.tx.client_mut(ck) {
            e.auth_attempts = attempts + 1;
            // Our own BYE may outlive its call: keep answering with this trunk's credentials.
            e.trunk = trunk;
        }
        match purpose {
            Purpose::Initial => {
                if let Some(call) = call {
                    self.bind_initial(call, side, ck);
                }
            }
            Purpose::Relay { server } => {
                if is_invite && let Some(c) = call.and_then(|c| self.calls.get_mut(&c)) {
                    c.leg_mut(side).invite_out = Some(ck);
                }
                if let Some(e) = self.tx.server_mut(server) {
                    e.relay = Some(ck);
                }
            }
            Purpose::Own => {}
        }
        true
    }

    /// The trunk refused our credentials (or sent a challenge we cannot answer): the caller
    /// gets 403, never the trunk's challenge, which is meaningless to it (the PBX has no
    /// credentials for the carrier and the challenge headers do not cross).
    pub(super) fn auth_failed(
        &mut self,
        now: Instant,
        call: Option<CallId>,
        side: Side,
        purpose: Purpose,
        media: &mut MediaTable,
    ) {
        self.auth_failures += 1;
        match purpose {
            Purpose::Own => {}
            Purpose::Initial => {
                let Some((call, c)) = call.and_then(|id| Some((id, self.calls.get_mut(&id)?)))
                else {
                    return;
                };
                c.leg_mut(side).invite_out = None;
                let (server, canceled) = (c.initial_server, c.canceled);
                if !canceled && let Some(server) = server {
                    self.final_on_server(now, server, Refusal::Forbidden);
                }
                let reason = if canceled {
                    EndReason::Cancelled
                } else {
                    EndReason::Rejected(403)
                };
                self.finish_call(call, reason, media);
            }
            Purpose::Relay { server } => {
                if let Some(c) = call.and_then(|c| self.calls.get_mut(&c)) {
                    c.leg_mut(side).invite_out = None;
                }
                self.final_on_server(now, server, Refusal::Forbidden);
                let is_bye = self
                    .tx
                    .server(server)
                    .is_some_and(|e| *e.request.method() == Method::Bye);
                if is_bye && let Some(call) = call {
                    self.finish_call(call, EndReason::Bye, media);
                }
            }
        }
    }

    /// A client transaction timed out (`Some(timer)`) or hit a transport error (`None`).
    pub(super) fn client_failed(
        &mut self,
        now: Instant,
        failure: ClientFailure,
        media: &mut MediaTable,
    ) {
        let ClientFailure {
            call,
            side,
            purpose,
            timer,
            own_refresh,
        } = failure;
        if own_refresh {
            // RFC 4028 §10: a refresh that times out ends the session.
            if let Some(call) = call {
                self.terminate(now, call, EndReason::SessionExpired, media);
            }
            return;
        }
        let (refusal, end) = match timer {
            Some(_) => (Refusal::RequestTimeout, EndReason::Timeout),
            None => (Refusal::ServiceUnavailable, EndReason::TransportError),
        };
        let status = refusal.code();
        match purpose {
            Purpose::Own => {}
            Purpose::Initial => {
                let Some((call, c)) = call.and_then(|id| Some((id, self.calls.get_mut(&id)?)))
                else {
                    return;
                };
                c.leg_mut(side).invite_out = None;
                let key = c.initial_server;
                let (provisional, canceled) = (c.provisional_seen, c.canceled);
                // No response at all (Timer B) or an unreachable target: the redirect set's
                // next Contact (redirect.rs), then the next server or trunk.
                if !canceled
                    && side == Side::Outside
                    && timer != Some(Timer::C)
                    && (self.recurse_after_failure(now, call, status, media)
                        || self.failover(now, call, status, media))
                {
                    return;
                }
                if timer == Some(Timer::C) && provisional && !canceled {
                    // §16.6 item 11: CANCEL the callee; the caller gets 408 now.
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.canceled = true;
                    }
                    self.cancel_client(now, call, media);
                }
                if !canceled && let Some(key) = key {
                    self.final_on_server(now, key, refusal);
                }
                self.finish_call(
                    call,
                    if canceled { EndReason::Cancelled } else { end },
                    media,
                );
            }
            Purpose::Relay { server } => {
                if let Some(c) = call.and_then(|c| self.calls.get_mut(&c)) {
                    c.leg_mut(side).invite_out = None;
                }
                self.final_on_server(now, server, refusal);
                let is_bye = self
                    .tx
                    .server(server)
                    .is_some_and(|e| *e.request.method() == Method::Bye);
                if is_bye && let Some(call) = call {
                    self.finish_call(call, EndReason::Bye, media);
                }
            }
        }
    }
}
