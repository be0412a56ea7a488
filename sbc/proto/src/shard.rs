//! Signaling shards: which call shard a received message belongs to, decided from the
//! message alone, without a lock or a table.
//!
//! Every identifier a shard mints (tags, Call-IDs, branches; `ids.rs`) starts with its
//! shard's label, `s<k>-`, in front of the 64 random bits, so whatever comes back carrying one
//! of them names its owner:
//! - a response: the top Via branch is ours (`z9hG4bKs<k>-…`) → shard `k`;
//! - a request with a To tag (in-dialog requests, the ACK of a final answer): the To tag is
//!   ours on both legs (the caller leg's To tag, and the callee leg's From tag, which the
//!   callee puts in To when it sends requests) → shard `k`;
//! - a REGISTER without a To tag: shard 0, which owns the PBX's relayed registrations
//!   (and the trunks' own) and mirrors their bindings to the others;
//! - a request without a To tag (a new INVITE, OPTIONS, MESSAGE; CANCEL, whose To
//!   has no tag): a hash of Call-ID and From tag. CANCEL and the retransmissions of a request,
//!   and the retry of a challenged INVITE (same Call-ID and From tag, new CSeq and branch),
//!   land on the shard of the first request;
//! - a response or a tagged request without a label: shard 0. With several shards every
//!   identifier we mint has one, so these are calls restored from a process that ran one
//!   shard (restored on shard 0) or not ours at all (481 there).
//!
//! A label naming a shard the process does not have (forged, or minted before a restart with
//! more shards) is taken modulo the shard count; the shard it lands on answers 481 as for any
//! unknown dialog. The label is not secret; the 64 random bits after it are.
//!
//! With one shard nothing is read and the SBC mints no labels, so its identifiers look as
//! they always did.

use crate::sip::{Message, Method};

/// Most signaling shards (`[general] signaling_shards`).
pub const MAX_SHARDS: u16 = 64;

/// A shard's call handles (admin API) carry its index from this bit up.
pub const CALL_HANDLE_SHIFT: u32 = 48;

/// The shard whose B2BUA made call handle `id`, among `count` shards.
pub fn of_call_handle(id: u64, count: u16) -> ShardId {
    let k = id >> CALL_HANDLE_SHIFT;
    ShardId(u16::try_from(k % u64::from(count.max(1))).unwrap_or(0))
}

/// One signaling shard: `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(u16);

impl ShardId {
    /// Shard `index` (below [`MAX_SHARDS`] for labels that route back to it).
    pub const fn new(index: u16) -> Self {
        Self(index)
    }

    /// Its index, `0..count`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The label in front of the random part of every identifier this shard mints.
    pub(crate) fn write_label(self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "s{}-", self.0);
    }
}

/// The shard that owns `msg` among `count` shards (see the [module documentation](self)).
pub fn route(msg: &Message, count: u16) -> ShardId {
    if count <= 1 {
        return ShardId(0);
    }
    // The PBX's REGISTERs (and anyone's) to shard 0, which owns the registrations relayed to
    // the trunk (one per AOR, whatever Call-ID the PBX picks) and mirrors their bindings to
    // the other shards; the registrar's answers carry shard 0's branch.
    if msg.is_request() && msg.method() == Some(&Method::Register) && msg.to_tag().is_none() {
        return ShardId(0);
    }
    let minted = if msg.is_request() {
        msg.to_tag()
    } else {
        Some(msg.top_branch().unwrap_or_default())
    };
    match minted {
        None => ShardId(spread(
            msg.call_id(),
            msg.from_tag().unwrap_or_default(),
            count,
        )),
        Some(id) => {
            ShardId(label_of(id.strip_prefix(BRANCH_COOKIE).unwrap_or(id)).map_or(0, |k| k % count))
        }
    }
}

/// Which of its shard's two inbound lanes a message waits in: the shard serves follow-ups
/// first, so a flood of new requests cannot delay or crowd out the calls in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A response, or a request with a To tag (in a dialog, or the ACK of a final answer):
    /// work of something already admitted.
    FollowUp,
    /// A request without a To tag: a new INVITE, OPTIONS, REGISTER, MESSAGE, and CANCEL
    /// (which must not overtake the INVITE it cancels).
    New,
}

/// The lane of `msg` (see [`Lane`]). The same split decides what a configured peer's budget
/// may shed (`protect::SourceGuard::check_follow_up`).
pub fn lane(msg: &Message) -> Lane {
    if msg.is_request() && msg.to_tag().is_none() {
        Lane::New
    } else {
        Lane::FollowUp
    }
}

/// The shard an identifier of ours names (a tag, a Call-ID or a branch without its cookie),
/// if it carries a label; modulo `count`.
pub fn of_token(token: &str, count: u16) -> Option<ShardId> {
    let count = count.max(1);
    label_of(token).map(|k| ShardId(k % count))
}

const BRANCH_COOKIE: &str = "z9hG4bK";

/// The `k` of a leading `s<k>-` (one to five digits), if there is one.
fn label_of(token: &str) -> Option<u16> {
    let rest = token.strip_prefix('s')?;
    let end = rest.find('-')?;
    let digits = rest.get(..end)?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The shard a persisted call is restored on, from its key (its legs' tags): the one its
/// messages will be routed to.
pub fn of_state_key(key: &str, count: u16) -> ShardId {
    of_token(key, count).unwrap_or(ShardId(0))
}

/// FNV-1a over Call-ID and From tag, reduced to `0..count`. Not keyed: a sender choosing its
/// Call-IDs can aim its new requests at one shard, which only skews load (every source is
/// rate-limited the same on every shard).
fn spread(call_id: &str, from_tag: &str, count: u16) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in call_id.bytes().chain([0]).chain(from_tag.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    // The high bits mix best in FNV; `count` ≤ 64 so the remainder fits.
    u16::try_from((h >> 32) % u64::from(count)).unwrap_or(0)
}

#[cfg(test)]
mod tests;
