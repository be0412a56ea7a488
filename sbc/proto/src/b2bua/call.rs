//! A call and its two legs: each leg is one dialog (Call-ID, tags, CSeq space, route set,
//! target) and the call holds what spans both (state, media session, pending 2xx and reliable
//! provisionals, trunk and failover plan).

use super::*;

/// A call in one B2BUA: its key in the call table. The public API speaks of it as the number
/// [`CallId::raw`] (events, the admin API); handles are never reused while the B2BUA lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct CallId(u64);

impl CallId {
    /// The handle after `self`.
    pub(super) const fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The number the public API uses.
    pub(super) const fn raw(self) -> u64 {
        self.0
    }

    /// The call of a number the public API gave back (e.g. the admin API ending a call).
    pub(super) const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// A read-only view of one call, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Call handle (stable for the call's life; use it to end the call).
    pub id: u64,
    /// Side of the caller.
    pub from: Side,
    /// Whether the call was answered.
    pub answered: bool,
    /// When the INVITE arrived.
    pub started: Instant,
    /// When it was answered.
    pub answered_at: Option<Instant>,
    /// Media session, if any.
    pub media: Option<SessionId>,
    /// The carrier-side trunk (index in the configuration's trunk list), if any.
    pub trunk: Option<usize>,
    /// The inside leg, then the outside leg.
    pub legs: [LegInfo; 2],
}

/// A read-only view of one leg (dialog) of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegInfo {
    /// Side.
    pub side: Side,
    /// The dialog's Call-ID on this leg.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Where requests on this leg go.
    pub peer: Peer,
}

#[derive(Debug)]
pub(super) struct Leg {
    pub(super) peer: Peer,
    /// The SBC's address on this leg (Via, Contact): the listener the caller used, or the
    /// trunk's configured local address.
    pub(super) local: LocalAddr,
    pub(super) call_id: String,
    /// Our tag, where it sits in `local_hdr` ([`Leg::local_tag`]). These four are set with
    /// [`Leg::set_local`] and [`Leg::set_remote`] (a new leg is made with [`TagAt::UNSET`]
    /// and empty values first), which keep each tag and its value in step.
    pub(super) local_tag: TagAt,
    /// The peer's tag once known, in `remote_hdr` ([`Leg::remote_tag`]).
    pub(super) remote_tag: Option<TagAt>,
    /// Our From (UAC leg) or To (UAS leg) value, with our tag.
    pub(super) local_hdr: String,
    /// The peer's value, with its tag once known.
    pub(super) remote_hdr: String,
    pub(super) local_cseq: u32,
    pub(super) remote_target: String,
    pub(super) route_set: Vec<String>,
    pub(super) origin: sdp::Origin,
    /// An INVITE we have outstanding on this leg (for 491 glare detection).
    pub(super) invite_out: Option<TxId>,
    /// This leg's session timer (RFC 4028), once negotiated.
    pub(super) session: Option<session_timer::LegTimer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    Early,
    Confirmed,
}

/// A 2xx we retransmit to `leg` until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
pub(super) struct Pending2xx {
    pub(super) leg: Side,
    pub(super) cseq: u32,
    pub(super) response: Bytes,
    pub(super) next: Instant,
    pub(super) interval: Duration,
    pub(super) deadline: Instant,
    /// Late offer: the other leg's 2xx is ACKed (with the answer) only when this ACK arrives.
    pub(super) ack_other_cseq: Option<u32>,
}

/// The ACK sent for a leg's 2xx, resent when that leg retransmits the 2xx (RFC 3261
/// §13.2.2.4). Kept until `until`, 64·T1 after it was sent: the 2xx retransmissions reach the
/// call only through the INVITE client transaction, whose Timer M (64·T1 from the 2xx, RFC
/// 6026 §7.2) ends no later; after that they are strays. Boxed: a call holds it for its first
/// 32 s only, and every concurrent call holds its `Call`.
#[derive(Debug)]
pub(super) struct KeptAck {
    pub(super) cseq: u32,
    pub(super) ack: Bytes,
    pub(super) until: Instant,
}

/// A reliable provisional retransmitted to the caller until PRACKed (RFC 3262 §3).
#[derive(Debug)]
pub(super) struct PendingRel {
    pub(super) rseq: u32,
    pub(super) response: Bytes,
    pub(super) next: Instant,
    pub(super) interval: Duration,
    pub(super) deadline: Instant,
}

#[derive(Debug)]
pub(super) struct Call {
    pub(super) origin: Side,
    pub(super) started: Instant,
    pub(super) answered_at: Option<Instant>,
    pub(super) legs: [Leg; 2],
    pub(super) state: CallState,
    pub(super) media: Option<SessionId>,
    /// The caller's INVITE server transaction; `None` for a call restored from a snapshot,
    /// whose INVITE transactions ended with the previous process.
    pub(super) initial_server: Option<TxId>,
    /// Our INVITE toward the callee (None only while it is being replaced).
    pub(super) initial_client: Option<TxId>,
    pub(super) provisional_seen: bool,
    pub(super) cancel_pending: bool,
    pub(super) canceled: bool,
    /// Our 2xx to the caller awaiting its ACK. Boxed, as is `pending_rel`: set for a moment
    /// of the call only, while every concurrent call holds its `Call` (96 and 88 bytes inline).
    pub(super) pending_2xx: Option<Box<Pending2xx>>,
    /// The caller's INVITE supports or requires 100rel (RFC 3262).
    pub(super) caller_100rel: bool,
    /// RSeq of the next reliable provisional to the caller.
    pub(super) next_rseq: u32,
    /// A reliable provisional to the caller awaiting its PRACK.
    pub(super) pending_rel: Option<Box<PendingRel>>,
    /// Our RSeq → the callee's RSeq, for mapping the caller's RAck.
    pub(super) rseq_map: Vec<(u32, u32)>,
    /// Last callee RSeq seen (its retransmissions are not relayed again).
    pub(super) last_callee_rseq: Option<u32>,
    /// Last 2xx-ACK sent on each leg, resent when that leg retransmits its 2xx, for 64·T1.
    pub(super) acks: [Option<Box<KeptAck>>; 2],
    pub(super) ends_at: Option<Instant>,
    /// The trunk of the carrier leg (index into `cfg.trunks`); None when the carrier is no
    /// configured trunk.
    pub(super) trunk: Option<TrunkId>,
    /// Outbound calls: the trunks still to try after `trunk`, in the route's order.
    pub(super) next_trunks: Vec<TrunkId>,
    /// Which of the trunk's servers the carrier leg uses: 0 = its target, i = alternate i-1.
    pub(super) server: usize,
    /// Outbound calls: the offer sent to the carrier, reused on failover and redirects.
    pub(super) offer: Option<Bytes>,
    /// The relay endpoints of the caller's offer (failover writes that offer again for
    /// another trunk's codec policy).
    pub(super) relays: Vec<crate::media::StreamRelay>,
    /// Redirect targets already tried (3xx recursion, `redirect.rs`).
    pub(super) redirects: redirect::Tried,
    /// The carrier's early dialogs (forking, `fork.rs`).
    pub(super) forks: fork::Forks,
    /// SRTP keys and negotiation per leg (`srtp_policy.rs`).
    pub(super) srtp: super::srtp_policy::CallSrtp,
    /// Codecs each side declared and the relay's payload-type rewrites (`codec_policy.rs`).
    pub(super) codecs: super::codec_policy::CallCodecs,
    /// The streams each side last described, and those to fall back to while a re-offer is
    /// unanswered (`t38.rs`).
    pub(super) offers: super::offers::Offers,
    /// What the call's detail record needs beyond the dialogs (`record.rs`).
    pub(super) facts: super::record::Facts,
    /// Digest of the state last reported for persistence (`snapshot.rs`); `None`: never
    /// reported, so its end needs no delete either.
    pub(super) persisted: Option<u64>,
    /// The call's fingerprint when its record was last built (`snapshot.rs`): a check that
    /// finds it unchanged skips building the record (the dirty test of a touched call).
    pub(super) state_fp: Option<u64>,
}

/// A tag as the place of its `tag` parameter's value in the leg's From or To value. Every leg
/// holds both headers with the tags in them, for the requests it sends: a second copy of each
/// tag was two more strings per leg (~100 bytes with their allocations, 20,000 legs at 10,000
/// calls) for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TagAt {
    start: u32,
    len: u32,
}

impl TagAt {
    /// No tag yet: a leg being made, before [`Leg::set_local`].
    pub(super) const UNSET: Self = Self { start: 0, len: 0 };

    /// Where the `tag` parameter of the From/To value `hdr` is, if it is exactly `tag`.
    fn find(hdr: &str, tag: &str) -> Option<Self> {
        // The usual value ends with its only `;tag=` (the values the SBC builds always do):
        // found without parsing the value (four parses a call were ~2 % of its instructions).
        // Anything else (LWS around `;`, a second `tag=`, in the URI or a display name) is
        // parsed.
        if let Some(rest) = hdr.strip_suffix(tag)
            && rest.ends_with(";tag=")
            && !tag.is_empty()
            && tag_params(hdr) == 1
        {
            let at = Self {
                start: u32::try_from(rest.len()).ok()?,
                len: u32::try_from(tag.len()).ok()?,
            };
            // The parser agrees (a value it refuses has its tag where `place` would put it).
            debug_assert!(Self::parsed(hdr, tag).is_none_or(|p| p == at), "{hdr}");
            return Some(at);
        }
        Self::parsed(hdr, tag)
    }

    /// [`TagAt::find`] by the name-addr parser.
    fn parsed(hdr: &str, tag: &str) -> Option<Self> {
        let at = crate::sip::NameAddr::parse(hdr).ok()?.params.get("tag")??;
        if at != tag {
            return None;
        }
        // `at` is a slice of `hdr` (the parser borrows, never copies).
        let start = at.as_ptr().addr().checked_sub(hdr.as_ptr().addr())?;
        Some(Self {
            start: u32::try_from(start).ok()?,
            len: u32::try_from(at.len()).ok()?,
        })
    }

    /// `hdr` carrying `tag` as its `tag` parameter, and where: `hdr` itself when it does, else
    /// with the parameter replaced or added. (A value the name-addr parser refuses gets
    /// `;tag=` appended, as `msg::with_tag` leaves it unchanged.)
    fn place(hdr: String, tag: &str) -> (String, Self) {
        if let Some(at) = Self::find(&hdr, tag) {
            return (hdr, at);
        }
        let edited = msg::with_tag(&hdr, Some(tag));
        if let Some(at) = Self::find(&edited, tag) {
            return (edited, at);
        }
        let start = hdr.len() + ";tag=".len();
        let at = Self {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(tag.len()).unwrap_or(0),
        };
        (format!("{hdr};tag={tag}"), at)
    }

    /// The tag, read from the value it was found in.
    fn of(self, hdr: &str) -> &str {
        let start = self.start as usize;
        hdr.get(start..start.saturating_add(self.len as usize))
            .unwrap_or_default()
    }
}

/// How many times `;tag=` (any case) occurs in `hdr`.
fn tag_params(hdr: &str) -> usize {
    hdr.as_bytes()
        .windows(5)
        .filter(|w| w.eq_ignore_ascii_case(b";tag="))
        .count()
}

impl Leg {
    /// Our tag.
    pub(super) fn local_tag(&self) -> &str {
        self.local_tag.of(&self.local_hdr)
    }

    /// The peer's tag, once known.
    pub(super) fn remote_tag(&self) -> Option<&str> {
        self.remote_tag.map(|t| t.of(&self.remote_hdr))
    }

    /// Sets our value `hdr` and our tag `tag` (added to `hdr` if it does not carry it).
    pub(super) fn set_local(&mut self, hdr: String, tag: &str) {
        let (hdr, at) = TagAt::place(hdr, tag);
        self.local_hdr = hdr;
        self.local_tag = at;
    }

    /// Sets the peer's value `hdr` and its tag, if known (added to `hdr` if it does not carry
    /// it; without one, `hdr` is kept as it is).
    pub(super) fn set_remote(&mut self, hdr: String, tag: Option<&str>) {
        match tag {
            Some(tag) => {
                let (hdr, at) = TagAt::place(hdr, tag);
                self.remote_hdr = hdr;
                self.remote_tag = Some(at);
            }
            None => {
                self.remote_hdr = hdr;
                self.remote_tag = None;
            }
        }
    }

    /// An in-dialog request on this leg (RFC 3261 §12.2.1.1): to the remote target through the
    /// route set, our From and the peer's To, the leg's Call-ID. No body, no Contact, no extra
    /// headers, Max-Forwards 70; callers override what differs.
    pub(super) fn request<'a>(
        &'a self,
        method: &'a Method,
        local: LocalAddr,
        branch: &'a str,
        cseq: u32,
        user_agent: &'a str,
    ) -> RequestSpec<'a> {
        RequestSpec {
            method,
            ruri: &self.remote_target,
            local,
            branch,
            max_forwards: 70,
            routes: &self.route_set,
            from: &self.local_hdr,
            to: &self.remote_hdr,
            call_id: &self.call_id,
            cseq,
            contact: false,
            user_agent,
            content_type: None,
            body: b"",
            extra: &[],
            shaping: None,
        }
    }
}

impl Call {
    /// The side the call came from (the caller's leg).
    pub(super) fn leg_side_of_caller(&self) -> Side {
        self.origin
    }

    pub(super) fn leg(&self, side: Side) -> &Leg {
        &self.legs[side_index(side)]
    }

    pub(super) fn leg_mut(&mut self, side: Side) -> &mut Leg {
        &mut self.legs[side_index(side)]
    }
}

pub(super) const fn side_index(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}

impl Call {
    /// The read-only view of this call.
    pub(super) fn info(&self, id: u64) -> CallInfo {
        let c = self;
        CallInfo {
            id,
            from: c.origin,
            answered: c.state == CallState::Confirmed,
            started: c.started,
            answered_at: c.answered_at,
            media: c.media,
            trunk: c.trunk.map(TrunkId::index),
            legs: [Side::Inside, Side::Outside].map(|side| {
                let l = c.leg(side);
                LegInfo {
                    side,
                    call_id: l.call_id.clone(),
                    local_tag: l.local_tag().to_owned(),
                    remote_tag: l.remote_tag().map(str::to_owned),
                    peer: l.peer,
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TagAt;

    #[test]
    fn a_tag_is_read_from_its_header_value() {
        // The value carries the tag: kept as it is, the tag read back from it.
        let (hdr, at) = TagAt::place("\"A\" <sip:a@x>;tag=abc;x=1".into(), "abc");
        assert_eq!(hdr, "\"A\" <sip:a@x>;tag=abc;x=1");
        assert_eq!(at.of(&hdr), "abc");
        // Parameter names are case-insensitive: `TAG=` is the tag too.
        let (hdr, at) = TagAt::place("<sip:a@x>;TAG=abc".into(), "abc");
        assert_eq!((hdr.as_str(), at.of(&hdr)), ("<sip:a@x>;TAG=abc", "abc"));
        // Without it, or with another one, the value is given the tag.
        let (hdr, at) = TagAt::place("<sip:b@y>".into(), "t1");
        assert_eq!((hdr.as_str(), at.of(&hdr)), ("<sip:b@y>;tag=t1", "t1"));
        let (hdr, at) = TagAt::place("<sip:b@y>;tag=old".into(), "new");
        assert_eq!(at.of(&hdr), "new");
        assert!(!hdr.contains("old"), "{hdr}");
        // The parser decides whenever the value's end could mislead: a tag in the URI too,
        // or a second tag parameter (the parser's is the first).
        let (hdr, at) = TagAt::place("<sip:a@x;tag=abc>;tag=abc".into(), "abc");
        assert_eq!(at.start as usize, hdr.len() - 3);
        let (hdr, at) = TagAt::place("<sip:a@x>;tag=one;Tag=two".into(), "two");
        assert_eq!(at.of(&hdr), "two");
        assert_eq!(
            TagAt::parsed(&hdr, "two"),
            Some(at),
            "the first tag is it: {hdr}"
        );
        // A value the parser refuses still keeps the tag.
        let (hdr, at) = TagAt::place("<<bad".into(), "t2");
        assert_eq!(at.of(&hdr), "t2");
        assert_eq!(std::mem::size_of::<Option<TagAt>>(), 12);
    }
}
