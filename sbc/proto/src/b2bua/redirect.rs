//! A carrier's 3xx to a call's INVITE (RFC 3261 §8.1.3.4, §21.3), per trunk:
//! - `Recurse` (the default): the SBC sends the INVITE to the redirect's Contacts itself, best
//!   `q` first, each as a new carrier dialog built by the same trunk's rules (numbers, headers,
//!   credentials, limits slot). Bounded by `max_redirects` per call and loop-safe: a target
//!   (address and user) is never tried twice and the SBC's own addresses are never a target.
//!   Only Contacts with an IP address are followed (the core has no resolver); when none is
//!   left, the last 3xx reaches the PBX.
//! - `Relay`: the 3xx reaches the PBX with its Contacts, rewritten to the SBC's inside address
//!   (user and `q` kept) when the trunk hides them, so the carrier's topology stays outside.

use std::net::SocketAddr;

use super::{B2bua, Event, LocalAddr, Restart, Target, call::CallId, msg};
use crate::{
    media::MediaControl,
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

/// The redirect targets one call has tried.
#[derive(Debug, Default)]
pub(super) struct Tried {
    /// Redirects followed.
    count: u8,
    /// (address, user) of every INVITE sent for the call, the first one included.
    targets: Vec<(SocketAddr, Option<String>)>,
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

    /// A carrier's 3xx to the INVITE of `call`: on a trunk that recurses, the INVITE goes to the
    /// best Contact not tried yet. True when it did (the 3xx goes no further).
    pub(super) fn recurse(
        &mut self,
        now: std::time::Instant,
        call: CallId,
        resp: &Message,
        media: &mut dyn MediaControl,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let Some(index) = c.trunk else {
            return false;
        };
        let recurse = self
            .cfg
            .trunks
            .get(index.index())
            .is_some_and(|t| t.redirect == Redirect::Recurse);
        if !recurse || c.canceled {
            return false;
        }
        let (Some(offer), Some(orig)) = (
            c.offer.clone(),
            c.initial_server
                .and_then(|k| self.tx.server(k))
                .map(|e| e.request.clone()),
        ) else {
            return false;
        };
        let leg = c.leg(Side::Outside);
        let current = (leg.peer.addr, user_of(&leg.remote_hdr));
        let count = c.redirects.count;
        if count >= self.cfg.max_redirects {
            self.events.push_back(Event::Redirect {
                call: call.raw(),
                outcome: "limit",
            });
            return false;
        }
        let tried = &c.redirects.targets;
        let next = candidates(resp).into_iter().find(|cand| {
            let key = (cand.target.addr, cand.user.clone());
            key != current && !tried.contains(&key) && !self.is_own_address(cand.target.addr)
        });
        let Some(next) = next else {
            self.events.push_back(Event::Redirect {
                call: call.raw(),
                outcome: "no_target",
            });
            return false;
        };
        if let Some(c) = self.calls.get_mut(&call) {
            c.redirects.count += 1;
            if !c.redirects.targets.contains(&current) {
                c.redirects.targets.push(current);
            }
            c.redirects
                .targets
                .push((next.target.addr, next.user.clone()));
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
