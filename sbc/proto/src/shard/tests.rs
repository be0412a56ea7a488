//! Routing by the shard label: every message kind to the shard that minted its identifier,
//! CANCEL with its INVITE, new requests spread, forged labels contained.

use bytes::Bytes;

use super::*;
use crate::{ids::Rng, sip::Limits};

fn parse(text: &str) -> Message {
    Message::parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default())
        .unwrap_or_else(|e| panic!("test message does not parse: {e}\n{text}"))
}

fn request(method: &str, call_id: &str, from_tag: &str, to_tag: Option<&str>) -> Message {
    let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    let branch: String = call_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    parse(&format!(
        "{method} sip:1@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbx{branch}
Max-Forwards: 70
From: <sip:100@pbx.lan>;tag={from_tag}
To: <sip:1@10.0.0.1>{to}
Call-ID: {call_id}
CSeq: 1 {method}
Content-Length: 0

"
    ))
}

fn response(branch: &str, call_id: &str) -> Message {
    parse(&format!(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP 203.0.113.1:5080;branch={branch}
From: <sip:100@203.0.113.1>;tag=s1-00000000000000aa
To: <sip:1@198.51.100.7>;tag=carrier
Call-ID: {call_id}
CSeq: 1 INVITE
Content-Length: 0

"
    ))
}

#[test]
fn one_shard_takes_everything_without_reading() {
    let m = response("z9hG4bKs5-0123456789abcdef", "x");
    assert_eq!(route(&m, 1), ShardId::new(0));
    assert_eq!(route(&m, 0), ShardId::new(0));
}

#[test]
fn a_response_goes_to_the_shard_of_its_branch() {
    for k in 0..8 {
        let m = response(&format!("z9hG4bKs{k}-0123456789abcdef"), "whatever");
        assert_eq!(route(&m, 8), ShardId::new(k));
    }
}

#[test]
fn an_in_dialog_request_goes_to_the_shard_of_its_to_tag() {
    for method in ["BYE", "ACK", "INVITE", "UPDATE", "INFO", "REFER", "NOTIFY"] {
        let m = request(method, "c1", "theirs", Some("s3-0123456789abcdef"));
        assert_eq!(route(&m, 4), ShardId::new(3), "{method}");
    }
}

#[test]
fn cancel_and_retries_land_with_their_invite() {
    let n = 4;
    for i in 0..200 {
        let call_id = format!("call-{i}@pbx");
        let invite = route(&request("INVITE", &call_id, "ft", None), n);
        // CANCEL has the INVITE's Call-ID, From tag and To (no tag).
        assert_eq!(route(&request("CANCEL", &call_id, "ft", None), n), invite);
        // A challenged INVITE's retry: same Call-ID and From tag, new CSeq and branch.
        let retry = parse(&format!(
            "INVITE sip:1@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKother{i}
Max-Forwards: 70
From: <sip:100@pbx.lan>;tag=ft
To: <sip:1@10.0.0.1>
Call-ID: {call_id}
CSeq: 2 INVITE
Content-Length: 0

"
        ));
        assert_eq!(route(&retry, n), invite);
    }
}

#[test]
fn new_requests_spread_evenly() {
    let n = 4u16;
    let mut per = [0u32; 4];
    let calls = 4_000;
    for i in 0..calls {
        let m = request("INVITE", &format!("{i:08x}-c@10.0.0.10"), "t", None);
        per[route(&m, n).index()] += 1;
    }
    // Even within ±10 % of the fair share.
    for (k, &c) in per.iter().enumerate() {
        assert!(
            c.abs_diff(calls / 4) < calls / 40,
            "shard {k}: {c} of {calls}"
        );
    }
}

#[test]
fn foreign_or_forged_labels_stay_in_range() {
    let n = 3;
    // A label past the shard count (restart with fewer shards, or forged): modulo.
    let m = request("BYE", "c", "t", Some("s7-0123456789abcdef"));
    assert_eq!(route(&m, n), ShardId::new(1));
    let huge = request("BYE", "c", "t", Some("s99999-0"));
    assert!(route(&huge, n).index() < 3);
    // Not a label: shard 0 (a call restored from a one-shard process, or not ours).
    for tag in [
        "s-1",
        "sx-1",
        "s123456-1",
        "3-abc",
        "s12",
        "S1-abc",
        "as1-x",
    ] {
        for i in 0..20 {
            let m = request("BYE", &format!("c{i}"), "t", Some(tag));
            assert_eq!(route(&m, n), ShardId::new(0), "{tag}");
        }
    }
    let foreign = response("z9hG4bKcarrier-1", "c");
    assert_eq!(route(&foreign, n), ShardId::new(0));
    assert_eq!(of_token("s2-abc", 0), Some(ShardId::new(0)));
    assert_eq!(of_token("abc", 4), None);
}

#[test]
fn a_labelled_generator_keeps_all_64_random_bits() {
    // Same seed, with and without the label: the random part is identical, so the label
    // costs no entropy.
    let mut plain = Rng::from_test_seed(11).fork();
    let mut labelled = Rng::from_test_seed(11).for_shard(ShardId::new(5));
    for _ in 0..100 {
        let (p, l) = (plain.token(), labelled.token());
        assert_eq!(p.len(), 16);
        assert_eq!(l, format!("s5-{p}"));
        assert_eq!(of_token(&l, 8), Some(ShardId::new(5)));
    }
    let (p, l) = (plain.branch(), labelled.branch());
    assert_eq!(l, format!("z9hG4bKs5-{}", &p["z9hG4bK".len()..]));
    // Forks keep the label (registrations and checks fork their generators).
    assert!(labelled.fork().token().starts_with("s5-"));
    assert!(plain.fork().token().len() == 16);
}

#[test]
fn a_persisted_call_is_restored_where_its_messages_go() {
    assert_eq!(
        of_state_key("s3-0123456789abcdef.s3-fedcba9876543210", 4),
        ShardId::new(3)
    );
    assert_eq!(
        of_state_key("0123456789abcdef.fedcba9876543210", 4),
        ShardId::new(0)
    );
}

#[test]
fn new_requests_and_cancel_wait_in_the_new_lane_the_rest_are_follow_ups() {
    for (msg, want) in [
        (request("INVITE", "c1", "f1", None), Lane::New),
        (request("OPTIONS", "c1", "f1", None), Lane::New),
        (request("REGISTER", "c1", "f1", None), Lane::New),
        // CANCEL stays behind the INVITE it cancels.
        (request("CANCEL", "c1", "f1", None), Lane::New),
        (request("BYE", "c1", "f1", Some("s1-00")), Lane::FollowUp),
        (request("ACK", "c1", "f1", Some("t9")), Lane::FollowUp),
        (request("INVITE", "c1", "f1", Some("s0-aa")), Lane::FollowUp),
        (response("z9hG4bKs1-00", "c1"), Lane::FollowUp),
        (response("z9hG4bKforeign", "c1"), Lane::FollowUp),
    ] {
        assert_eq!(
            lane(&msg),
            want,
            "{}",
            String::from_utf8_lossy(msg.as_bytes())
        );
    }
}

#[test]
fn every_register_goes_to_shard_0_which_owns_the_registrations() {
    for n in 0..64 {
        let reg = request("REGISTER", &format!("reg-{n}@pbx"), &format!("t{n}"), None);
        assert_eq!(route(&reg, 4), ShardId(0), "REGISTER {n}");
    }
    // A REGISTER inside a dialog (none in practice) follows its tag like any request.
    let tagged = request("REGISTER", "r", "t", Some("s3-00"));
    assert_eq!(route(&tagged, 4), ShardId(3));
}
