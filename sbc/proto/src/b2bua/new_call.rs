//! A new call: the caller's INVITE opens the server transaction, the offer is anchored, and the
//! callee leg's INVITE is built by the trunk's rules.

use super::*;
use crate::text::concat;

/// A callee-leg INVITE and the dialog values it set.
#[derive(Debug)]
pub(super) struct OutInvite {
    pub(super) bytes: Bytes,
    pub(super) ruri: String,
    pub(super) from_hdr: String,
    pub(super) to_hdr: String,
}

/// What a callee-leg INVITE is built for: where it goes and the new dialog's identifiers.
#[derive(Debug, Clone, Copy)]
pub(super) struct CalleeInvite<'a> {
    /// The side of the callee leg.
    pub(super) to: Side,
    /// The carrier-side trunk whose rules apply.
    pub(super) trunk: Option<TrunkId>,
    pub(super) target: Target,
    /// The called number when it is not the caller's (a redirect's target).
    pub(super) called: Option<&'a str>,
    pub(super) call_id: &'a str,
    /// Our From tag.
    pub(super) tag: &'a str,
    pub(super) branch: &'a str,
    /// The offer, rewritten for this leg (empty: late offer).
    pub(super) sdp: &'a [u8],
}

impl B2bua {
    /// Sets up a call for the caller's INVITE `msg` (already admitted and routed by `plan`)
    /// and sends the callee leg's INVITE.
    pub(super) fn new_call(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        plan: Plan,
        media: &mut MediaTable,
    ) {
        let origin = peer.side;
        let to = origin.other();
        let trying = self.trying(&msg);
        let inv = InviteServer::new(trying, peer.transport.is_reliable(), self.cfg.timers);
        let caller_tag = self.rng.token();
        let merged = merged_key(&msg);
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx: STx::Invite(inv),
            peer,
            request: KeptRequest::new(msg.clone()),
            call: None,
            to_tag: Some(caller_tag.clone()),
            relay: None,
            merged,
        });
        self.after_server(key);

        // The called number: the Request-URI user (the To user if the URI has none).
        if request_user(&msg).is_none() {
            self.final_on_server(now, key, Refusal::NotFound);
            return;
        }
        // Every answer to an INVITE carries SDP (the relay's offer or answer).
        if !body::accepts_sdp(&msg) {
            self.final_on_server(now, key, Refusal::NotAcceptable);
            return;
        }
        let target = plan.target;
        let local_to = self.trunk_local(to, plan.trunk);
        let body = match body::classify(&msg, &Method::Invite) {
            Ok(body::Body::Sdp(sdp)) => sdp,
            Ok(_) => b"",
            Err(r) => {
                self.refuse_body(now, key, &Method::Invite, r);
                return;
            }
        };
        let has_sdp = !body.is_empty();
        let mut codecs = codec_policy::CallCodecs::default();
        let mut offers = super::offers::Offers::default();
        let mut session = None;
        let mut relays = Vec::new();
        let mut described = None;
        if has_sdp {
            let peers = self.new_media_peers(origin, peer.addr.ip(), target.addr.ip(), plan.trunk);
            let anchored = self
                .read_offer(body, origin, plan.trunk, &mut codecs)
                .and_then(|desc| {
                    Self::anchor_offer(now, origin, &desc, &peers, media).map(|a| (desc, a))
                });
            match anchored {
                Ok((desc, a)) => {
                    offers.described(origin, desc.streams());
                    session = Some(a.session);
                    relays = a.streams;
                    described = Some(desc);
                }
                Err(refusal) => {
                    self.final_on_server(now, key, refusal);
                    return;
                }
            }
        }

        let caller_100rel = extensions::offers(&msg, "100rel");
        let id = self.next_call;
        self.next_call = id.next();
        let (out_call_id, out_tag) = match &plan.resume {
            Some(r) => (r.call_id.clone(), r.tag.clone()),
            None => (
                concat(&[&self.rng.token(), "@", &msg::host(local_to.addr)]),
                self.rng.token(),
            ),
        };

        let mut caller_leg = Leg {
            peer,
            local: self.local_of(&peer),
            call_id: msg.call_id().to_owned(),
            local_tag: super::call::TagAt::UNSET,
            remote_tag: None,
            local_hdr: String::new(),
            remote_hdr: String::new(),
            local_cseq: self.rng.next_u64() as u32 % 10_000 + 1,
            remote_target: first_contact(&msg).unwrap_or_else(|| msg.from().uri_str.to_owned()),
            route_set: msg
                .record_routes()
                .filter_map(Result::ok)
                .map(|r| format!("<{}>", r.uri_str))
                .collect(),
            origin: sdp::Origin::new(self.rng.next_u64() % 1_000_000_000),
            invite_out: None,
            session: None,
        };
        let mut callee_origin = sdp::Origin::new(self.rng.next_u64() % 1_000_000_000);
        let mut sdp_out = Vec::new();
        if let Some(desc) = &described
            && let Err(p) =
                desc.rewrite(&relays, to, &mut callee_origin, &self.cfg.sdp, &mut sdp_out)
        {
            self.border_refusal(p.as_str());
            if let Some(s) = session {
                media.release(s);
            }
            self.final_on_server(now, key, Refusal::NotAcceptableHere);
            return;
        }
        let mut srtp = srtp_policy::CallSrtp::default();
        let crossing = srtp_policy::Crossing {
            now,
            role: srtp_policy::SdpRole::Offer,
            from: origin,
            to,
            body,
        };
        if has_sdp
            && let Err(p) = srtp_policy::negotiate(
                &self.cfg,
                &mut self.rng,
                &mut srtp,
                plan.trunk,
                crossing,
                &mut sdp_out,
                Some((&mut *media, session)),
            )
        {
            self.border_refusal(p.as_str());
            if let Some(s) = session {
                media.release(s);
            }
            self.final_on_server(now, key, Refusal::NotAcceptableHere);
            return;
        }
        let branch = self.rng.branch();
        let mut out = self.build_invite(
            &msg,
            &CalleeInvite {
                to,
                trunk: plan.trunk,
                target,
                called: None,
                call_id: &out_call_id,
                tag: &out_tag,
                branch: &branch,
                sdp: &sdp_out,
            },
        );
        // A retry of a challenged INVITE continues the challenged dialog: its next CSeq and
        // the caller's credentials for the challenged realms (auth_passthrough.rs).
        let mut out_cseq = 1;
        if let Some(r) = &plan.resume {
            out_cseq = r.cseq.saturating_add(1);
            let creds = auth_passthrough::credential_headers(&msg, Some(&r.realms));
            if let Some(b) =
                auth_passthrough::resumed_invite(&out.bytes, out_cseq, &creds, &self.parse_limits)
            {
                out.bytes = b;
            }
        }
        let callee_peer = Peer {
            side: to,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: self.trunk_bound(to, plan.trunk),
        };
        let mut callee_leg = Leg {
            peer: callee_peer,
            local: local_to,
            call_id: out_call_id,
            local_tag: super::call::TagAt::UNSET,
            remote_tag: None,
            local_hdr: String::new(),
            remote_hdr: String::new(),
            local_cseq: out_cseq,
            remote_target: out.ruri,
            route_set: Vec::new(),
            origin: callee_origin,
            invite_out: None,
            session: None,
        };
        caller_leg.set_local(
            msg::first_value(msg.headers(), HeaderName::To)
                .unwrap_or("")
                .to_owned(),
            &caller_tag,
        );
        caller_leg.set_remote(
            msg::first_value(msg.headers(), HeaderName::From)
                .unwrap_or("")
                .to_owned(),
            msg.from_tag(),
        );
        callee_leg.set_local(out.from_hdr, &out_tag);
        callee_leg.set_remote(out.to_hdr, None);
        let legs = match origin {
            Side::Inside => [caller_leg, callee_leg],
            Side::Outside => [callee_leg, caller_leg],
        };
        // Kept for failover and redirect recursion (`redirect.rs`), for the whole call: without
        // the spare room the SDP writer reserved (a `Bytes` from a `Vec` keeps its capacity).
        let offer = (to == Side::Outside).then(|| {
            sdp_out.shrink_to_fit();
            Bytes::from(sdp_out)
        });
        let call = Call {
            origin,
            started: now,
            answered_at: None,
            legs,
            state: CallState::Early,
            media: session,
            initial_server: Some(key),
            initial_client: None,
            provisional_seen: false,
            cancel_pending: false,
            canceled: false,
            pending_2xx: None,
            caller_100rel,
            next_rseq: (self.rng.next_u64() % 1_000_000) as u32 + 1,
            pending_rel: None,
            rseq_map: Vec::new(),
            last_callee_rseq: None,
            acks: [None, None],
            ends_at: self.cfg.max_call_duration.map(|d| now + d),
            trunk: plan.trunk,
            next_trunks: plan.next_trunks,
            server: 0,
            offer,
            relays,
            redirects: redirect::Tried::default(),
            forks: fork::Forks::default(),
            srtp,
            codecs,
            offers,
            facts: super::record::Facts::new(&msg, session),
            persisted: None,
            state_fp: None,
        };
        self.count_call(plan.trunk);
        self.dialogs
            .insert(&call.leg(origin).call_id, &caller_tag, id, origin);
        let callee = call.leg(to);
        self.dialogs
            .insert(&callee.call_id, callee.local_tag(), id, to);
        if let Some(s) = session {
            self.sessions.insert(s, id);
        }
        if let Some(e) = self.tx.server_mut(key) {
            e.call = Some(id);
        }
        let ends_at = call.ends_at;
        self.calls.insert(id, Box::new(call));
        if let Some(at) = ends_at {
            self.timers.set_earliest(TimerRef::Call(id), at);
        }
        self.account_call(id);
        self.events.push_back(Event::CallStarted {
            call: id.raw(),
            from: origin,
            trunk: plan.trunk.map(TrunkId::index),
        });
        let sent = self.send_client(
            now,
            Outgoing {
                bytes: out.bytes,
                peer: callee_peer,
                call: Some(id),
                side: to,
                purpose: Purpose::Initial,
            },
            media,
        );
        if let Some(ck) = sent {
            self.bind_initial(id, to, ck);
        }
    }

    /// The INVITE that starts the callee leg of a call (also rebuilt for each failover):
    /// Request-URI and To on the target with the called number, From with the calling number
    /// (and the trunk's from_domain toward a carrier), both numbers normalised by the trunk's
    /// rules for this direction, the allowlisted headers of the caller's INVITE, and the
    /// trunk's header rules.
    pub(super) fn build_invite(&mut self, orig: &Message, spec: &CalleeInvite<'_>) -> OutInvite {
        let CalleeInvite {
            to,
            trunk,
            target,
            called,
            call_id,
            tag,
            branch,
            sdp: sdp_body,
        } = *spec;
        let cfg = &self.cfg;
        let trunk_cfg = trunk.and_then(|t| cfg.trunks.get(t.index()));
        let rules = trunk_cfg.map_or(&NO_RULES, |t| match to {
            Side::Outside => &t.outbound,
            Side::Inside => &t.inbound,
        });
        let user = called.or_else(|| request_user(orig)).unwrap_or_default();
        // From decoded once for both its user and its display name.
        let orig_from = orig.from();
        let from_user = match orig_from.uri {
            crate::sip::Uri::Sip(u) => u.user.unwrap_or("anonymous").to_owned(),
            crate::sip::Uri::Tel(t) => t.raw.trim_start_matches("tel:").to_owned(),
            crate::sip::Uri::Other(_) => "anonymous".to_owned(),
        };
        let called = crate::routing::normalize(&rules.called, user);
        let calling = crate::routing::normalize(&rules.calling, &from_user);
        let local_to = match (to, trunk_cfg.and_then(|t| t.local)) {
            (Side::Outside, Some(l)) => l.advertised,
            _ => cfg.local(to),
        };
        let target_hp = msg::hostport(target.addr);
        let own_host = msg::host(local_to.addr);
        let from_host = match (to, trunk_cfg.and_then(|t| t.from_domain.as_deref())) {
            (Side::Outside, Some(d)) => d,
            _ => own_host.as_str(),
        };
        // Digest pass-through: the challenger computes `uri=` over the Request-URI it sees, which
        // must be the one the authenticating side signed (auth_passthrough.rs).
        let passthrough = trunk_cfg.is_some_and(|t| t.auth == TrunkAuth::Passthrough);
        let ruri = match orig.request_uri_str() {
            Some(r) if passthrough => r.to_owned(),
            _ => concat(&["sip:", &called, "@", &target_hp]),
        };
        let from_hdr = match orig_from.display_name {
            Some(d) => concat(&[d, " <sip:", &calling, "@", from_host, ">;tag=", tag]),
            None => concat(&["<sip:", &calling, "@", from_host, ">;tag=", tag]),
        };
        let to_hdr = if passthrough {
            concat(&["<", &ruri, ">"])
        } else {
            concat(&["<sip:", &called, "@", &target_hp, ">"])
        };

        let requires_100rel = extensions::requires(orig, "100rel");
        // The caller insists on reliable provisionals: so must the callee (RFC 3262 §4).
        let mut added: Vec<(String, String)> = Vec::new();
        if requires_100rel {
            added.push(("Require".into(), "100rel".into()));
        }
        // The SBC's own extensions on this leg (a header rule may still remove Supported).
        if !rules.headers.iter().any(|r| r.suppresses("supported")) {
            let timer = cfg.session_timer.enabled;
            added.push(("Supported".into(), extensions::supported_value(timer)));
        }
        for (n, v) in cfg.session_timer.request_headers(None) {
            added.push((n.into(), v));
        }
        let vars = crate::routing::Vars {
            calling: &calling,
            called: &called,
            trunk: trunk_cfg.map_or("", |t| t.name.as_str()),
            domain: from_host,
        };
        for r in &rules.headers {
            if r.action != crate::routing::HeaderAction::Remove {
                added.push((r.name.clone(), r.value.render(&vars)));
            }
        }
        let extra: Vec<(&str, &str)> = added
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mf = orig.max_forwards().map_or(70, forwarded_max_forwards);
        let bytes = msg::request(
            &RequestSpec {
                method: &Method::Invite,
                ruri: &ruri,
                local: local_to,
                branch,
                max_forwards: mf,
                routes: &[],
                from: &from_hdr,
                to: &to_hdr,
                call_id,
                cseq: 1,
                contact: true,
                user_agent: &cfg.user_agent,
                content_type: Some("application/sdp"),
                body: sdp_body,
                extra: &extra,
                shaping: Some(&msg::Shaping {
                    headers: &rules.headers,
                    identity: &rules.calling,
                }),
            },
            Some(orig.headers()),
            &cfg.pass_headers,
            &mut self.buf,
        );
        OutInvite {
            bytes,
            ruri,
            from_hdr,
            to_hdr,
        }
    }
}
