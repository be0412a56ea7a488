//! One call detail record: the flat shape written as a JSON line, stored as a PostgreSQL row
//! (the keys are the column names, `docs/cdr.md`) and returned by `GET /api/v1/cdrs`.

use std::time::{Duration, Instant, SystemTime};

use sbc_proto::{
    b2bua::{CallRecord, LegRecord},
    net::Side,
};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::media::view::{EndpointView, SessionView};

/// A call detail record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cdr {
    /// The SBC instance (`[general] instance`).
    pub instance: String,
    /// The B2BUA's call handle; `null` for an INVITE refused before a call existed.
    pub call_handle: Option<u64>,
    /// When the INVITE arrived (RFC 3339, UTC, milliseconds).
    pub start_time: String,
    /// When the call was answered.
    pub answer_time: Option<String>,
    /// When the call attempt ended.
    pub end_time: String,
    /// Seconds from the answer to the end (0 for unanswered attempts).
    pub duration_s: f64,
    /// `outbound` (PBX → carrier) or `inbound`.
    pub direction: String,
    /// The carrier-side trunk, if any.
    pub trunk: Option<String>,
    /// The inside leg's Call-ID.
    pub inside_call_id: Option<String>,
    /// The calling number on the inside leg.
    pub inside_calling: Option<String>,
    /// The called number on the inside leg.
    pub inside_called: Option<String>,
    /// The outside leg's Call-ID.
    pub outside_call_id: Option<String>,
    /// The calling number on the outside leg (after the trunk's rules).
    pub outside_calling: Option<String>,
    /// The called number on the outside leg (after the trunk's rules).
    pub outside_called: Option<String>,
    /// The final status of the caller's INVITE (200 once answered).
    pub status: u16,
    /// Why it ended (`bye`, `rejected`, `cancelled`, `timeout`, …).
    pub reason: String,
    /// Who ended it: `caller`, `callee` or `sbc`.
    pub hangup: String,
    /// `xdp` when any packet of the call took the fast path, `userspace` when all were relayed
    /// in userspace, `none` without media packets.
    pub media_path: String,
    /// Per-stream statistics, in `m=` order.
    pub media: Vec<StreamStats>,
}

/// One stream of a [`Cdr`]: what each side sent through the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Sent by the PBX side.
    pub inside: DirectionStats,
    /// Sent by the carrier side.
    pub outside: DirectionStats,
}

/// Packets one side sent on a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// Packets relayed (userspace and XDP).
    pub packets: u64,
    /// Bytes (UDP payload) relayed.
    pub bytes: u64,
    /// Of `packets`, the ones the XDP fast path forwarded.
    pub xdp_packets: u64,
    /// Packets dropped at the relay (not allowed, strict source).
    pub dropped: u64,
    /// RTP packets lost before the relay (sequence gaps seen in userspace).
    pub lost: i64,
    /// Interarrival jitter in ms (userspace-seen RTP), if measured.
    pub jitter_ms: Option<f64>,
}

impl Cdr {
    /// Builds the record of `r`: `now`/`wall` is the same moment on both clocks, used to turn
    /// the B2BUA's `Instant`s into wall-clock time; `media` is the session's last view.
    pub fn new(
        instance: &str,
        trunk: Option<String>,
        r: &CallRecord,
        media: Option<&SessionView>,
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let at = |i: Instant| {
            wall.checked_sub(now.saturating_duration_since(i))
                .unwrap_or(wall)
        };
        let start = r.started.map_or(wall, at);
        let answer = r.answered_at.map(at);
        let duration = answer.map_or(Duration::ZERO, |a| {
            wall.duration_since(a).unwrap_or(Duration::ZERO)
        });
        let leg = |side: Side| r.legs[usize::from(side == Side::Outside)].as_ref();
        let field = |side: Side, f: fn(&LegRecord) -> &String| leg(side).map(|l| f(l).clone());
        let media: Vec<StreamStats> = media.map_or_else(Vec::new, |v| {
            v.streams
                .iter()
                .map(|s| StreamStats {
                    inside: DirectionStats::of(&s.inside),
                    outside: DirectionStats::of(&s.outside),
                })
                .collect()
        });
        let xdp: u64 = media
            .iter()
            .map(|s| s.inside.xdp_packets + s.outside.xdp_packets)
            .sum();
        let all: u64 = media
            .iter()
            .map(|s| s.inside.packets + s.outside.packets)
            .sum();
        let media_path = match (xdp, all) {
            (0, 0) => "none",
            (0, _) => "userspace",
            _ => "xdp",
        };
        Self {
            instance: instance.to_owned(),
            call_handle: r.call,
            start_time: rfc3339(start),
            answer_time: answer.map(rfc3339),
            end_time: rfc3339(wall),
            duration_s: (duration.as_millis() as f64) / 1000.0,
            direction: match r.from {
                Side::Inside => "outbound",
                Side::Outside => "inbound",
            }
            .to_owned(),
            trunk,
            inside_call_id: field(Side::Inside, |l| &l.call_id),
            inside_calling: field(Side::Inside, |l| &l.calling),
            inside_called: field(Side::Inside, |l| &l.called),
            outside_call_id: field(Side::Outside, |l| &l.call_id),
            outside_calling: field(Side::Outside, |l| &l.calling),
            outside_called: field(Side::Outside, |l| &l.called),
            status: r.status,
            reason: r.reason.as_str().to_owned(),
            hangup: r.hangup.as_str().to_owned(),
            media_path: media_path.to_owned(),
            media,
        }
    }

    /// The four numbers of the record.
    pub fn numbers(&self) -> impl Iterator<Item = &str> {
        [
            &self.inside_calling,
            &self.inside_called,
            &self.outside_calling,
            &self.outside_called,
        ]
        .into_iter()
        .filter_map(|n| n.as_deref())
    }
}

impl DirectionStats {
    fn of(e: &EndpointView) -> Self {
        Self {
            packets: e.userspace_packets + e.xdp_packets,
            bytes: e.userspace_bytes + e.xdp_bytes,
            xdp_packets: e.xdp_packets,
            dropped: e.dropped,
            lost: e.rtp_lost,
            jitter_ms: e.rtp_jitter_ms,
        }
    }
}

/// `t` as RFC 3339 in UTC with milliseconds (`2026-12-03T22:10:00.123Z`): fixed width, so
/// records sort and compare as text.
pub fn rfc3339(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    let ms = t.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an RFC 3339 time (any offset) into the canonical form of [`rfc3339`].
pub fn canonical(text: &str) -> Option<String> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(rfc3339(SystemTime::from(t)))
}

#[cfg(test)]
mod tests {
    use sbc_proto::b2bua::{EndReason, Hangup};

    use super::*;

    #[test]
    fn times_are_utc_milliseconds_and_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_335_800_123);
        assert_eq!(rfc3339(t), "2026-12-03T22:10:00.123Z");
        assert_eq!(
            canonical("2026-12-03T23:10:00.123+01:00").as_deref(),
            Some("2026-12-03T22:10:00.123Z")
        );
        assert_eq!(canonical("yesterday"), None);
    }

    #[test]
    fn a_refused_attempt_has_no_outside_leg_and_no_media() {
        let r = CallRecord {
            call: None,
            from: Side::Outside,
            trunk: Some(0),
            started: None,
            answered_at: None,
            status: 503,
            reason: EndReason::Rejected(503),
            hangup: Hangup::Sbc,
            media: None,
            legs: [
                None,
                Some(LegRecord {
                    call_id: "c1".into(),
                    calling: "+4930".into(),
                    called: "100".into(),
                }),
            ],
        };
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_335_800);
        let c = Cdr::new("sbc", Some("carrier".into()), &r, None, now, wall);
        assert_eq!(c.direction, "inbound");
        assert_eq!(c.start_time, c.end_time);
        assert_eq!((c.duration_s, c.media_path.as_str()), (0.0, "none"));
        assert_eq!(c.outside_call_id.as_deref(), Some("c1"));
        assert_eq!(c.inside_call_id, None);
        assert_eq!(c.numbers().collect::<Vec<_>>(), ["+4930", "100"]);
    }
}
