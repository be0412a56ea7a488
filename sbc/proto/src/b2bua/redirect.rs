//! A carrier's 3xx to a call's INVITE (RFC 3261 §8.1.3.4, §21.3), per trunk:
//! - `Recurse` (the default): the SBC sends the INVITE to the redirect's Contacts itself, best
//!   `q` first, each as a new carrier dialog built by the same trunk's rules (numbers, headers,
//!   credentials, limits slot). Bounded by `max_redirects` per call and loop-safe: a target
//!   (address and user) is never tried twice and the SBC's own addresses are never a target.
//!   Only Contacts with an IP address are followed (the core has no resolver); when none is
//!   left, the last 3xx reaches the PBX. The Contacts not tried yet stay the call's redirect
//!   set (RFC 3261 §16.5's target set, merged across 3xx, best `q` first): when a target it
//!   sent the INVITE to fails with a 4xx/5xx (a timeout included), the next one is tried
//!   (§8.1.3.4: a 3xx's Contacts are alternatives for the same request), before any trunk
//!   failover. A 6xx ends the search (§16.7 item 5: "no other location will accept"), and a
//!   401/407 goes to whoever answers challenges; only when the set is exhausted does the
//!   failure reach failover or the PBX.
//! - `Relay`: the 3xx reaches the PBX with its Contacts, rewritten to the SBC's inside address
//!   (user and `q` kept) when the trunk hides them, so the carrier's topology stays outside.

use std::net::SocketAddr;

use super::{B2bua, Event, LocalAddr, Restart, Target, call::CallId, msg};
use crate::{
    media::MediaTable,
    net::{Side, TransportKind},
    sip::{Contact, Host, Message, NameAddr, Uri},
};

/// What the SBC does with a carrier's 3xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redirect {
    /// Follow the Contacts itself (the PBX sees only the final outcome).
    #[default]
    Recurse,
    /// Pass the 3xx to the PBX.
    Relay,
}

/// Most Contacts a call's redirect set keeps: the 3xx it merges are each bounded by the
/// parser's limits, but a chain of them (up to `max_redirects`) must not grow the call.
const MAX_SET: usize = 32;

/// The redirect targets one call has tried, and those it may still try. Boxed, made by the
/// first redirect followed: every concurrent call holds a `Call`, few ever follow a 3xx (a
/// pointer inline instead of 56 bytes).
#[derive(Debug, Default)]
pub(super) struct Tried(Option<Box<Redirects>>);

/// What [`Tried`] holds once a call follows a redirect.
#[derive(Debug, Default)]
struct Redirects {
    /// Redirects followed.
    count: u8,
    /// (address, user) of every INVITE sent for the call, the first one included.
    targets: Vec<(SocketAddr, Option<String>)>,
    /// The Contacts of the 3xx received, best `q` first; the tried ones are skipped when the
    /// next is chosen. Empty until a 3xx is followed, and again after a trunk failover (its
    /// Contacts were the failed trunk's).
    set: Vec<Candidate>,
}

impl Tried {
    /// Forgets the redirect set: the call moved to another trunk or server.
    pub(super) fn forget_set(&mut self) {
        if let Some(r) = &mut self.0 {
            r.set.clear();
        }
    }

    /// Redirects followed.
    fn count(&self) -> u8 {
        self.0.as_ref().map_or(0, |r| r.count)
    }

    /// The targets tried so far (none until a redirect is followed).
    fn targets(&self) -> &[(SocketAddr, Option<String>)] {
        self.0.as_ref().map_or(&[], |r| &r.targets)
    }

    /// The redirect set (empty until a 3xx is followed).
    fn set(&self) -> &[Candidate] {
        self.0.as_ref().map_or(&[], |r| &r.set)
    }

    /// The parts, made on first use.
    fn parts(&mut self) -> &mut Redirects {
        self.0.get_or_insert_default()
    }
}

impl Redirects {
    /// Adds the Contacts of a new 3xx to the set, keeping it in `q` order (the new ones first
    /// among equals, as the latest answer) and free of duplicates.
    fn merge(&mut self, fresh: Vec<Candidate>) {
        let mut set = fresh;
        set.append(&mut self.set);
        set.sort_by_key(|c| std::cmp::Reverse(c.q));
        let mut seen: Vec<(SocketAddr, Option<String>)> = Vec::new();
        set.retain(|c| {
            let key = (c.target.addr, c.user.clone());
            let new = !seen.contains(&key);
            if new {
                seen.push(key);
            }
            new
        });
        set.truncate(MAX_SET);
        self.set = set;
    }
}

/// One Contact of a 3xx, usable as a target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    q: u16,
    target: Target,
    user: Option<String>,
}

/// The Contacts of `resp` that name an IP address, best `q` first (absent `q` = 1; equal `q`
/// in the order given).
fn candidates(resp: &Message) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = resp
        .contacts()
        .filter_map(Result::ok)
        .filter_map(|c| {
            let q = c.q().unwrap_or(1000);
            let a = c.addr()?;
            let Uri::Sip(u) = a.uri else { return None };
            let transport = match u.params.get("transport").flatten() {
                Some(t) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
                Some(t) if t.eq_ignore_ascii_case("tls") => TransportKind::Tls,
                _ if u.secure => TransportKind::Tls,
                _ => TransportKind::Udp,
            };
            let default_port = if transport == TransportKind::Tls {
                5061
            } else {
                5060
            };
            let ip = match u.host {
                Host::Ipv4(ip) => ip.into(),
                Host::Ipv6(ip) => ip.into(),
                Host::Domain(_) => return None,
            };
            Some(Candidate {
                q,
                target: Target {
                    addr: SocketAddr::new(ip, u.port.unwrap_or(default_port)),
                    transport,
                },
                user: u.user.map(str::to_owned),
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.q));
    out
}

/// The user part of a name-addr's SIP URI.
fn user_of(value: &str) -> Option<String> {
    match NameAddr::parse(value).ok()?.uri {
        Uri::Sip(u) => u.user.map(str::to_owned),
        _ => None,
    }
}

impl B2bua {
    /// Whether `addr` is one of the SBC's own SIP addresses (a redirect there would loop).
    fn is_own_address(&self, addr: SocketAddr) -> bool {
        let cfg = &self.cfg;
        addr.ip().is_unspecified()
            || [cfg.inside.addr, cfg.outside.addr].contains(&addr)
            || cfg
                .listeners
                .iter()
                .any(|(bound, l)| *bound == addr || l.addr == addr)
    }

    /// A carrier's 3xx to the INVITE of `call`: on a trunk that recurses, its Contacts join the
    /// call's redirect set and the INVITE goes to the best one not tried yet. True when it did
    /// (the 3xx goes no further).
    pub(super) fn recurse(
        &mut self,
        now: std::time::Instant,
        call: CallId,
        resp: &Message,
        media: &mut MediaTable,
    ) -> bool {
        if !self.recursing(call) {
            return false;
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.redirects.parts().merge(candidates(resp));
        }
        self.follow_next(now, call, true, media)
    }

    /// A target of `call`'s redirect set failed with final `status` (or timed out, as 408):
    /// the next untried Contact of the set gets the INVITE. True when it did; false when the
    /// call has no set left to try, or `status` ends the search.
    pub(super) fn recurse_after_failure(
        &mut self,
        now: std::time::Instant,
        call: CallId,
        status: u16,
        media: &mut MediaTable,
    ) -> bool {
        // 6xx: the callee declined everywhere (§16.7 item 5). 401/407: a challenge for this
        // target, answered by the SBC or the PBX on the same dialog (auth_passthrough.rs).
        if !(400..600).contains(&status) || matches!(status, 401 | 407) {
            return false;
        }
        let has_set = self
            .calls
            .get(&call)
            .is_some_and(|c| !c.redirects.set().is_empty());
        if !has_set || !self.recursing(call) {
            return false;
        }
        self.follow_next(now, call, false, media)
    }

    /// Whether `call` is an outbound call, not cancelled, on a trunk that recurses.
    fn recursing(&self, call: CallId) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        !c.canceled
            && c.trunk
                .and_then(|t| self.cfg.trunks.get(t.index()))
                .is_some_and(|t| t.redirect == Redirect::Recurse)
    }

    /// Sends `call`'s INVITE to the best untried Contact of its redirect set, within
    /// `max_redirects`. `report_none`: an empty choice is counted (`no_target`), as it is for
    /// a 3xx; after a failure it is not, since no redirect was asked for.
    fn follow_next(
        &mut self,
        now: std::time::Instant,
        call: CallId,
        report_none: bool,
        media: &mut MediaTable,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let Some(index) = c.trunk else {
            return false;
        };
        let (Some(offer), Some(orig)) = (
            c.offer.clone(),
            c.initial_server
                .and_then(|k| self.tx.server(k))
                .and_then(|e| e.request.message().cloned()),
        ) else {
            return false;
        };
        let leg = c.leg(Side::Outside);
        let current = (leg.peer.addr, user_of(&leg.remote_hdr));
        let tried = c.redirects.targets();
        let next = c
            .redirects
            .set()
            .iter()
            .find(|cand| {
                let key = (cand.target.addr, cand.user.clone());
                key != current && !tried.contains(&key) && !self.is_own_address(cand.target.addr)
            })
            .cloned();
        if c.redirects.count() >= self.cfg.max_redirects && (report_none || next.is_some()) {
            self.events.push_back(Event::Redirect {
                call: call.raw(),
                outcome: "limit",
            });
            return false;
        }
        let Some(next) = next else {
            if report_none {
                self.events.push_back(Event::Redirect {
                    call: call.raw(),
                    outcome: "no_target",
                });
            }
            return false;
        };
        if let Some(c) = self.calls.get_mut(&call) {
            let r = c.redirects.parts();
            r.count += 1;
            if !r.targets.contains(&current) {
                r.targets.push(current);
            }
            r.targets.push((next.target.addr, next.user.clone()));
            // The new target has not answered anything yet: a CANCEL waits for its provisional.
            c.provisional_seen = false;
        }
        self.events.push_back(Event::Redirect {
            call: call.raw(),
            outcome: "followed",
        });
        let restart = Restart {
            index,
            target: next.target,
            called: next.user.as_deref(),
            orig: &orig,
            offer: &offer,
        };
        self.restart_outside(now, call, &restart, media)
    }

    /// The Contacts of a 3xx relayed to `caller`. Toward the carrier: numbers at the SBC only,
    /// always. Toward the PBX: as the carrier sent them, or, from a trunk that hides them, rewritten to the SBC's address on the caller's side (user and `q`
    /// kept, anything else dropped).
    pub(super) fn relayed_contacts(
        &self,
        call: Option<CallId>,
        caller: Side,
        resp: &Message,
        local: LocalAddr,
    ) -> Vec<String> {
        // Toward the carrier a redirect never carries inside URIs (topology hiding fails
        // closed): only the numbers, at the SBC (`msg::redirect_contacts`).
        if caller == Side::Outside {
            return msg::redirect_contacts(
                resp.headers()
                    .all(crate::sip::HeaderName::Contact)
                    .filter_map(|h| h.value_str()),
                local,
            );
        }
        let hide = caller == Side::Inside
            && call
                .and_then(|c| self.calls.get(&c))
                .and_then(|c| self.cfg.trunks.get(c.trunk?.index()))
                .is_some_and(|t| t.hide_redirect_contacts);
        if !hide {
            return resp
                .headers()
                .all(crate::sip::HeaderName::Contact)
                .filter_map(|h| h.value_str().map(str::to_owned))
                .collect();
        }
        resp.contacts()
            .filter_map(Result::ok)
            .filter_map(|c: Contact<'_>| {
                let q = c.addr()?.params.get("q").flatten().map(str::to_owned);
                let user = match c.addr()?.uri {
                    Uri::Sip(u) => u.user?.to_owned(),
                    Uri::Tel(t) => t.number.to_owned(),
                    Uri::Other(_) => return None,
                };
                let q = q.map_or_else(String::new, |q| format!(";q={q}"));
                Some(format!("<sip:{user}@{}>{q}", msg::hostport(local.addr)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::Limits;

    #[test]
    fn contacts_are_ordered_by_q_and_names_are_skipped() {
        let text = "SIP/2.0 300 Multiple Choices\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
                    From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:b@192.0.2.2>;tag=2\r\nCall-ID: c\r\n\
                    CSeq: 1 INVITE\r\nContact: <sip:low@192.0.2.7>;q=0.1, <sip:name@gw.example>\r\n\
                    Contact: <sip:high@192.0.2.8:5070;transport=tcp>;q=0.9\r\n\
                    Contact: <sip:[2001:db8::1]>\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(Bytes::from(text), &Limits::default()).expect("valid");
        let c = candidates(&m);
        let got: Vec<(u16, String, Option<&str>)> = c
            .iter()
            .map(|c| (c.q, c.target.addr.to_string(), c.user.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (1000, "[2001:db8::1]:5060".to_owned(), None),
                (900, "192.0.2.8:5070".to_owned(), Some("high")),
                (100, "192.0.2.7:5060".to_owned(), Some("low")),
            ]
        );
        assert_eq!(c[1].target.transport, TransportKind::Tcp);
    }
}
