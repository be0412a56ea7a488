//! How a trace is shown: JSON with every message, or a text ladder diagram (PBX | SBC |
//! carrier) of both legs merged in capture order.

use std::{fmt::Write, time::SystemTime};

use sbc_proto::net::Side;
use serde_json::{Value, json};

use super::store::{Direction, Entry, Leg};

/// Width of one arrow column.
const WIDTH: usize = 30;

/// Milliseconds since the Unix epoch.
fn unix_ms(t: SystemTime) -> u64 {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `HH:MM:SS.mmm` (UTC).
fn clock(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

fn entry_json(l: &Leg, e: &Entry) -> Value {
    json!({
        "time": format!("{} UTC", clock(e.at)),
        "time_unix_ms": unix_ms(e.at),
        "direction": e.dir,
        "side": e.side.as_str(),
        "transport": e.transport.as_str(),
        "src": e.src.to_string(),
        "dst": e.dst.to_string(),
        "summary": e.summary(),
        "cseq": e.cseq(),
        "truncated": e.truncated,
        "message": String::from_utf8_lossy(&l.data(e)),
    })
}

/// The legs as JSON.
pub fn to_json(legs: &[&Leg]) -> Value {
    let legs: Vec<Value> = legs
        .iter()
        .map(|l| {
            json!({
                "call_id": l.call_id,
                "side": l.side.as_str(),
                "call": l.call,
                "other_call_id": l.other,
                "calling": l.calling,
                "called": l.called,
                "final_status": l.final_status,
                "ended": l.ended(),
                "messages_dropped": l.dropped,
                "messages": l.messages.iter().map(|e| entry_json(l, e)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "legs": legs })
}

/// An arrow `---label--->` (or `<---label---`) exactly [`WIDTH`] wide.
fn arrow(label: &str, right: bool) -> String {
    let label: String = label.chars().take(WIDTH - 6).collect();
    let dashes = WIDTH - 2 - label.chars().count();
    let left = dashes / 2;
    let right_d = dashes - left;
    if right {
        format!("{}{label}{}>", "-".repeat(left + 1), "-".repeat(right_d))
    } else {
        format!("<{}{label}{}", "-".repeat(left), "-".repeat(right_d + 1))
    }
}

/// The legs as a ladder diagram, messages of both legs merged by capture time.
pub fn to_text(legs: &[&Leg]) -> String {
    let mut out = String::new();
    for l in legs {
        let _ = writeln!(
            out,
            "{} leg Call-ID {} ({} -> {}){}{}",
            l.side.as_str(),
            l.call_id,
            l.calling.as_deref().unwrap_or("?"),
            l.called.as_deref().unwrap_or("?"),
            l.final_status
                .map(|s| format!(", final {s}"))
                .unwrap_or_default(),
            if l.dropped > 0 {
                format!(", {} older messages dropped", l.dropped)
            } else {
                String::new()
            },
        );
    }
    let mut all: Vec<&Entry> = legs.iter().flat_map(|l| l.messages.iter()).collect();
    all.sort_by_key(|e| e.at);
    let blank = " ".repeat(WIDTH);
    let _ = writeln!(
        out,
        "\n{:<16}{:<w$}{:<w$}carrier",
        "time (UTC)",
        "PBX",
        "SBC",
        w = WIDTH + 1
    );
    for e in all {
        let label = if e.is_response() {
            // Responses name their method: "180 Ringing (INVITE)".
            format!("{} ({})", e.summary(), e.method())
        } else {
            e.summary()
        };
        let (inside, outside) = match (e.side, e.dir) {
            (Side::Inside, Direction::In) => (arrow(&label, true), blank.clone()),
            (Side::Inside, Direction::Out) => (arrow(&label, false), blank.clone()),
            (Side::Outside, Direction::Out) => (blank.clone(), arrow(&label, true)),
            (Side::Outside, Direction::In) => (blank.clone(), arrow(&label, false)),
        };
        let peer = match e.dir {
            Direction::In => e.src,
            Direction::Out => e.dst,
        };
        let _ = writeln!(
            out,
            "{:<16}|{inside}|{outside}|  {} {}",
            clock(e.at),
            e.transport.as_str(),
            peer
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_have_one_width_and_point_the_right_way() {
        for label in ["INVITE", "486 Busy Here (INVITE)", &"x".repeat(80)] {
            let r = arrow(label, true);
            let l = arrow(label, false);
            assert_eq!(r.chars().count(), WIDTH, "{r}");
            assert_eq!(l.chars().count(), WIDTH, "{l}");
            assert!(r.ends_with('>') && l.starts_with('<'));
        }
        assert_eq!(
            clock(std::time::UNIX_EPOCH + std::time::Duration::from_millis(3_723_004)),
            "01:02:03.004"
        );
    }
}
