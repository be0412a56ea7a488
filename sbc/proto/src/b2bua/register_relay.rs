//! REGISTER from the PBX (`[pbx] register`): rejected with 405, or registered at a trunk on the
//! PBX's behalf — the way most hosted trunks expect a PBX behind an SBC to register.
//!
//! Relaying: per AOR (the To user) the SBC keeps one registration toward the trunk with its
//! own Call-ID, From tag and CSeq space (RFC 3261 §10.2: the same Call-ID for every refresh,
//! CSeq + 1 each time), and its own Contact (`sip:<user>@<SBC outside address>`), so the PBX's
//! Contact never reaches the carrier. The expiry the PBX asks for (Contact `expires`, else
//! `Expires`) is asked of the registrar; the granted one (the 2xx's) is honoured: the binding
//! AOR → the PBX's address (where its REGISTER came from, NAT-proof) holds until then and is
//! removed on expiry, on `Expires: 0` and on `Contact: *`. An inbound call whose Request-URI
//! user is a bound AOR goes to that address (after the `[[inbound]]` routes, before `[pbx]
//! address`). The 2xx to the PBX lists the PBX's own Contacts with the granted expiry.
//!
//! Challenges follow the trunk's `auth`: `sbc` answers them with the trunk's credentials
//! (`retry_with_credentials`), `passthrough` relays them to the PBX intact and its retry (same
//! Call-ID, CSeq + 1) continues the same registration with its credentials; the Request-URI
//! and AOR then cross unchanged, because the digest covers the Request-URI.

use std::{collections::HashMap, time::Instant};

use super::{
    B2bua, Outgoing, Purpose, Refusal, RegisterPolicy, STx, ServerEntry, ServerKey, Target,
    TrunkAuth, TxId,
    admission::TrunkId,
    auth_passthrough, forwarded_max_forwards,
    msg::{self, RequestSpec, ResponseSpec},
};
use crate::{
    media::MediaTable,
    net::{Peer, Side, TransportKind},
    sip::{Contact, HeaderName, Message, Method, StatusCode, Uri},
    transaction::NonInviteServer,
};

/// Expiry asked for when the PBX's REGISTER names none (RFC 3261 §10.2.1.1 leaves it to the
/// registrar; 3600 s is the common default).
const DEFAULT_EXPIRES_S: u32 = 3600;

/// The registration of one AOR toward the trunk.
#[derive(Debug)]
struct Binding {
    call_id: String,
    tag: String,
    cseq: u32,
    /// Where calls for the AOR go, and until when.
    contact: Option<(Target, Instant)>,
    /// The REGISTER being relayed.
    pending: Option<Pending>,
    /// Last REGISTER from the PBX, for forgetting registrations that never bound.
    touched: Instant,
}

/// A REGISTER from the PBX awaiting the registrar's answer.
#[derive(Debug)]
struct Pending {
    /// Its server transaction (set once it exists, right after this entry).
    server: Option<TxId>,
    /// The PBX's Contact URIs, echoed in the 2xx.
    contacts: Vec<String>,
    /// The expiry asked for (0: remove).
    asked: u32,
    /// Where the REGISTER came from: the binding's target.
    target: Target,
}

/// The PBX's registrations relayed to the trunk, by AOR user.
#[derive(Debug, Default)]
pub(super) struct Registrations {
    by_user: HashMap<String, Binding>,
    /// Bindings another signaling shard holds (`Event::PbxBinding`): read for inbound calls
    /// only. Bounded like `by_user` (the owning shard's `max_bindings`).
    mirrored: HashMap<String, (Target, Instant)>,
}

impl Registrations {
    /// Where a call for `user` goes, while its binding holds.
    pub(super) fn target(&self, now: Instant, user: &str) -> Option<Target> {
        let (target, until) = self
            .by_user
            .get(user)
            .and_then(|b| b.contact)
            .or_else(|| self.mirrored.get(user).copied())?;
        (until > now).then_some(target)
    }

    /// Forgets expired bindings and registrations idle (never bound) for `idle`.
    fn purge(&mut self, now: Instant, idle: std::time::Duration) {
        self.mirrored.retain(|_, (_, until)| *until > now);
        self.by_user.retain(|_, b| {
            if b.contact.is_some_and(|(_, until)| until <= now) {
                b.contact = None;
            }
            b.contact.is_some() || b.pending.is_some() || b.touched + idle > now
        });
    }
}

impl B2bua {
    /// Bindings of the PBX's relayed registrations that hold at `now`.
    pub fn pbx_registrations(&self, now: Instant) -> usize {
        self.registrations
            .by_user
            .values()
            .filter(|b| b.contact.is_some_and(|(_, until)| until > now))
            .count()
    }

    /// Mirrors a binding another signaling shard holds (its `Event::PbxBinding`): calls for
    /// `user` that land here go to `target` until it expires or is removed (`None`). The
    /// PBX's REGISTERs all go to shard 0 (`crate::shard::route`), which owns the
    /// registrations toward the trunk; the others only read.
    pub fn mirror_pbx_binding(&mut self, user: &str, target: Option<(Target, Instant)>) {
        match target {
            Some(t) => {
                self.registrations.mirrored.insert(user.to_owned(), t);
            }
            None => {
                self.registrations.mirrored.remove(user);
            }
        }
    }

    /// Where a call from a trunk for `user` goes when the PBX registered that AOR.
    pub(super) fn registered_target(&self, now: Instant, user: &str) -> Option<Target> {
        self.registrations.target(now, user)
    }

    /// A REGISTER outside a dialog: answered per `[pbx] register`, never dropped.
    pub(super) fn on_register(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        media: &mut MediaTable,
    ) {
        let RegisterPolicy::Relay {
            trunk: index,
            max_bindings,
        } = self.cfg.pbx_register
        else {
            self.registers_refused += 1;
            self.reject(now, peer, key, msg, Refusal::MethodNotAllowed);
            return;
        };
        // Only the PBX registers through the SBC; a carrier has nothing to register here.
        let Some(tcfg) = self
            .cfg
            .trunks
            .get(index)
            .filter(|_| peer.side == Side::Inside)
        else {
            self.registers_refused += 1;
            self.reject(now, peer, key, msg, Refusal::MethodNotAllowed);
            return;
        };
        let user = match msg.to().uri {
            Uri::Sip(u) => u.user.map(str::to_owned),
            _ => None,
        };
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            self.registers_refused += 1;
            self.reject(now, peer, key, msg, Refusal::BadRequest);
            return;
        };
        let passthrough = tcfg.auth == TrunkAuth::Passthrough;
        let target = tcfg.target;
        let domain = tcfg
            .from_domain
            .clone()
            .unwrap_or_else(|| msg::host(target.addr).to_string());
        self.registrations.purge(now, self.cfg.timers.timeout());
        if !self.registrations.by_user.contains_key(&user)
            && self.registrations.by_user.len() >= max_bindings
        {
            self.registers_refused += 1;
            let retry = self.cfg.retry_after_s.to_string();
            self.reject_with(
                now,
                peer,
                key,
                msg,
                Refusal::ServiceUnavailable,
                &[("Retry-After", &retry)],
            );
            return;
        }

        let star = msg.contacts().any(|c| matches!(c, Ok(Contact::Star)));
        let contacts: Vec<String> = msg
            .contacts()
            .filter_map(|c| c.ok()?.addr().map(|a| format!("<{}>", a.uri_str)))
            .collect();
        let asked = if star {
            0
        } else {
            msg.contacts()
                .find_map(|c| c.ok()?.expires())
                .or_else(|| msg.headers().expires().ok().flatten())
                .unwrap_or(DEFAULT_EXPIRES_S)
        };
        let trunk = TrunkId::new(index);
        let local = self.trunk_local(Side::Outside, Some(trunk));
        let bound = self.trunk_bound(Side::Outside, Some(trunk));
        let call_id = format!("{}@{}", self.rng.token(), msg::host(local.addr));
        let tag = self.rng.token();
        let b = self
            .registrations
            .by_user
            .entry(user.clone())
            .or_insert_with(|| Binding {
                call_id,
                tag,
                cseq: 0,
                contact: None,
                pending: None,
                touched: now,
            });
        b.cseq += 1;
        b.touched = now;
        b.pending = Some(Pending {
            server: None,
            contacts: contacts.clone(),
            asked,
            target: Target {
                addr: peer.addr,
                transport: peer.transport,
            },
        });
        let (call_id, from_tag, cseq) = (b.call_id.clone(), b.tag.clone(), b.cseq);

        // The digest covers the Request-URI: in pass-through it crosses as the PBX signed it.
        let ruri = match msg.request_uri_str() {
            Some(r) if passthrough => r.to_owned(),
            _ => format!("sip:{domain}"),
        };
        let aor = if passthrough {
            msg.to().uri_str.to_owned()
        } else {
            format!("sip:{user}@{domain}")
        };
        let from = format!("<{aor}>;tag={from_tag}");
        let to = format!("<{aor}>");
        let contact = if star {
            "*".to_owned()
        } else {
            sbc_contact(&user, local.addr, local.transport)
        };
        let expires = asked.to_string();
        let mut extra_owned: Vec<(&str, String)> = Vec::new();
        if star || !contacts.is_empty() {
            extra_owned.push(("Contact", contact));
            extra_owned.push(("Expires", expires));
        }
        if passthrough {
            extra_owned.extend(auth_passthrough::credential_headers(&msg, None));
        }
        let extra: Vec<(&str, &str)> = extra_owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let branch = self.rng.branch();
        let req = msg::request(
            &RequestSpec {
                method: &Method::Register,
                ruri: &ruri,
                local,
                branch: &branch,
                max_forwards: msg.max_forwards().map_or(70, forwarded_max_forwards),
                routes: &[],
                from: &from,
                to: &to,
                call_id: &call_id,
                cseq,
                contact: false,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &extra,
                shaping: None,
            },
            None,
            &[],
            &mut self.buf,
        );
        let tx = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        let to_tag = self.rng.token();
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx: STx::NonInvite(tx),
            peer,
            request: super::KeptRequest::new(msg),
            call: None,
            to_tag: Some(to_tag),
            relay: None,
            merged: None,
        });
        if let Some(p) = self
            .registrations
            .by_user
            .get_mut(&user)
            .and_then(|b| b.pending.as_mut())
        {
            p.server = Some(key);
        }
        let to_peer = Peer {
            side: Side::Outside,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: bound,
        };
        self.registers_relayed += 1;
        let sent = self.send_client(
            now,
            Outgoing {
                bytes: req,
                peer: to_peer,
                call: None,
                side: Side::Outside,
                purpose: Purpose::Relay { server: key },
            },
            media,
        );
        let Some(ck) = sent else {
            return;
        };
        if let Some(e) = self.tx.server_mut(key) {
            e.relay = Some(ck);
        }
        // With `auth = sbc` the trunk's credentials answer its challenges.
        if let Some(e) = self.tx.client_mut(ck) {
            e.trunk = Some(trunk);
        }
    }

    /// The registrar's answer to a relayed REGISTER: the binding updated, the answer relayed
    /// to the PBX with its own Contacts (2xx), the challenge (401/407) or Min-Expires (423).
    pub(super) fn register_response(
        &mut self,
        now: Instant,
        server: TxId,
        status: u16,
        resp: &Message,
    ) {
        if status < 200 {
            return; // hop-by-hop for a non-INVITE: the PBX's own Timer E keeps it waiting
        }
        let found = self
            .registrations
            .by_user
            .iter_mut()
            .find(|(_, b)| b.pending.as_ref().is_some_and(|p| p.server == Some(server)));
        let Some((user, b)) = found else {
            return;
        };
        let user = user.clone();
        b.cseq = b.cseq.max(resp.cseq().seq);
        let Some(p) = b.pending.take() else {
            return;
        };
        let mut extra_owned: Vec<(&str, String)> = Vec::new();
        match status {
            200..=299 => {
                // The registrar's grant for our Contact (a 2xx lists the AOR's bindings).
                let granted = resp
                    .contacts()
                    .find_map(|c| c.ok()?.expires())
                    .or_else(|| resp.headers().expires().ok().flatten())
                    .unwrap_or(p.asked)
                    .min(p.asked.max(1));
                if p.asked == 0 || granted == 0 {
                    self.registrations.by_user.remove(&user);
                } else if !p.contacts.is_empty() {
                    b.contact = Some((
                        p.target,
                        now + std::time::Duration::from_secs(u64::from(granted)),
                    ));
                }
                let contact = self
                    .registrations
                    .by_user
                    .get(&user)
                    .and_then(|b| b.contact);
                let bound = contact.is_some();
                self.events.push_back(super::Event::PbxBinding {
                    user: user.clone(),
                    target: contact,
                });
                if bound {
                    for c in &p.contacts {
                        extra_owned.push(("Contact", format!("{c};expires={granted}")));
                    }
                }
            }
            401 | 407 => {
                self.challenges_relayed += 1;
                extra_owned.extend(auth_passthrough::challenge_headers(resp));
            }
            423 => {
                if let Some(v) = msg::first_value(resp.headers(), HeaderName::MinExpires) {
                    extra_owned.push(("Min-Expires", v.to_owned()));
                }
            }
            _ => {}
        }
        let Some(e) = self.tx.server(server) else {
            return;
        };
        // Gone with the final response: nothing more to answer.
        let Some(request) = e.request.message() else {
            return;
        };
        let extra: Vec<(&str, &str)> = extra_owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let local = self.cfg.local(Side::Inside);
        // The standard phrase: the registrar's own can name the carrier's systems.
        let reason = StatusCode::new(status).map_or("", StatusCode::standard_phrase);
        let out = msg::response(
            request,
            &ResponseSpec {
                status,
                reason,
                to_tag: e.to_tag.as_deref(),
                contact: None,
                user_agent: &self.cfg.user_agent,
                content_type: None,
                body: b"",
                extra: &extra,
            },
            Some((resp.headers(), local)),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        self.send_on_server(now, server, status, out);
    }
}

/// The Contact the SBC registers for `user`: itself on the trunk's side.
fn sbc_contact(user: &str, addr: std::net::SocketAddr, transport: TransportKind) -> String {
    let param = match transport {
        TransportKind::Udp => "",
        TransportKind::Tcp => ";transport=tcp",
        TransportKind::Tls => ";transport=tls",
    };
    format!("<sip:{user}@{}{param}>", msg::hostport(addr))
}
