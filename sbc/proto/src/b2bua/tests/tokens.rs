//! Unpredictable identifiers: an attacker who sees one INVITE the SBC sends to the carrier
//! learns nothing about the tags, Call-IDs and branches of the next one.
//!
//! The attack is the one that worked against the splitmix64 generator the SBC used before:
//! splitmix64's output function is a bijection, so one 64-bit token gives the whole state,
//! and the state only ever advances by a constant. The test runs the attack against the real
//! SBC (it must fail) and against a splitmix64 reference (it must succeed, so the test
//! would catch a return to a generator of that kind).

use std::collections::HashSet;

use super::*;

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const M1: u64 = 0xbf58_476d_1ce4_e5b9;
const M2: u64 = 0x94d0_49bb_1331_11eb;

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(M1);
    z = (z ^ (z >> 27)).wrapping_mul(M2);
    z ^ (z >> 31)
}

/// The inverse of `x ^ (x >> k)`.
fn unshift(y: u64, k: u32) -> u64 {
    let mut x = y;
    for _ in 0..64 / k + 1 {
        x = y ^ (x >> k);
    }
    x
}

/// The multiplicative inverse of an odd `a` modulo 2^64 (Newton's iteration).
fn inverse(a: u64) -> u64 {
    let mut x = a;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// The generator state that produced `out`.
fn unmix(out: u64) -> u64 {
    let z = unshift(out, 31).wrapping_mul(inverse(M2));
    let z = unshift(z, 27).wrapping_mul(inverse(M1));
    unshift(z, 30)
}

/// Every token a splitmix64 generator that produced `seen` would produce in its next `n`
/// outputs, as the SBC writes them (16 hex digits).
fn predict(seen: u64, n: u64) -> HashSet<String> {
    let state = unmix(seen);
    (1..=n)
        .map(|k| format!("{:016x}", mix(state.wrapping_add(GAMMA.wrapping_mul(k)))))
        .collect()
}

/// The 64-bit tokens in an INVITE: the Call-ID's random part, the From tag, the branch.
fn tokens(inv: &Message) -> Vec<String> {
    [
        inv.call_id().split('@').next().unwrap_or_default(),
        inv.from().tag().unwrap_or_default(),
        inv.top_via()
            .branch()
            .unwrap_or_default()
            .trim_start_matches("z9hG4bK"),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn parse_token(t: &str) -> u64 {
    u64::from_str_radix(t, 16).unwrap_or_else(|e| panic!("token {t:?} is not 16 hex digits: {e}"))
}

/// Two outbound INVITEs, the second after some unrelated activity.
fn two_invites() -> (Message, Message) {
    let mut sim = Sim::new();
    sim.deliver(pbx(), &pbx_invite("z9hG4bKpbx1", None));
    let first = sim.take_carrier().remove(0);
    let second_invite = pbx_invite("z9hG4bKpbx2", None)
        .replace("pbx-call-1", "pbx-call-2")
        .replace("tag=ptag1", "tag=ptag2");
    sim.deliver(pbx(), &second_invite);
    let second = sim.take_carrier().remove(0);
    (first, second)
}

#[test]
fn splitmix_inversion_recovers_the_state_from_one_token() {
    // The attack itself, on the old generator: one output predicts the following ones.
    let state = 0x1234_5678_9abc_def0_u64;
    let outputs: Vec<u64> = (1..=8)
        .map(|k| mix(state.wrapping_add(GAMMA.wrapping_mul(k))))
        .collect();
    assert_eq!(unmix(outputs[0]), state.wrapping_add(GAMMA));
    let predicted = predict(outputs[0], 16);
    for o in &outputs[1..] {
        assert!(predicted.contains(&format!("{o:016x}")));
    }
}

#[test]
fn the_next_invites_tokens_cannot_be_predicted_from_the_last_one() {
    let (first, second) = two_invites();
    let seen = tokens(&first);
    let next = tokens(&second);
    for s in &seen {
        // Whatever token of the first INVITE the attacker starts from, the next thousand
        // outputs of the generator it implies contain none of the second INVITE's tokens.
        let predicted = predict(parse_token(s), 1000);
        for t in &next {
            assert_eq!(t.len(), 16, "{t}");
            assert!(
                !predicted.contains(t),
                "token {t} of the next INVITE predicted from {s} of the previous one"
            );
        }
    }
}

#[test]
fn a_large_sample_of_tokens_is_balanced_and_unique() {
    // Tokens as the SBC writes them (tags, Call-IDs, branches all come from `token`).
    let mut rng = Rng::from_test_seed(99);
    const N: usize = 100_000;
    let mut ones = [0u32; 64];
    let mut seen = HashSet::with_capacity(N);
    for _ in 0..N {
        let t = rng.token();
        let v = parse_token(&t);
        for (bit, count) in ones.iter_mut().enumerate() {
            *count += u32::from(v >> bit & 1 == 1);
        }
        assert!(seen.insert(t), "duplicate token");
    }
    // Each bit is 1 in half the tokens: σ = √(N/4) ≈ 158; allow 5σ.
    for (bit, count) in ones.iter().enumerate() {
        let off = (i64::from(*count) - (N as i64) / 2).abs();
        assert!(off < 800, "bit {bit} set in {count} of {N} tokens");
    }
    // And the SBC's own output: 2,000 calls, 3 tokens each (plus the To tags toward the
    // PBX), never a repeat.
    let mut sim = Sim::new();
    let mut wire = HashSet::new();
    for i in 0..2000 {
        let inv = pbx_invite(&format!("z9hG4bKpbx{i}"), None)
            .replace("pbx-call-1", &format!("pbx-call-{i}"))
            .replace("tag=ptag1", &format!("tag=ptag{i}"));
        sim.deliver(pbx(), &inv);
        for t in tokens(&sim.take_carrier().remove(0)) {
            assert!(wire.insert(t), "repeated token on the wire");
        }
        let _ = sim.take_pbx();
    }
    assert_eq!(wire.len(), 6000);
}

#[test]
fn a_seeded_generator_is_reproducible_and_forks_are_independent() {
    let mut a = Rng::from_test_seed(5);
    let mut b = Rng::from_test_seed(5);
    assert_eq!(a.token(), b.token());
    let mut fa = a.fork();
    let mut fb = a.fork();
    assert_ne!(fa.token(), fb.token());
    let mut k1 = Rng::from_seed([7; 32]);
    let mut k2 = Rng::from_seed([8; 32]);
    assert_ne!(k1.next_u64(), k2.next_u64());
}

#[test]
fn every_message_of_a_sharded_call_routes_back_to_its_shard() {
    use crate::shard::{ShardId, route};
    let shard = ShardId::new(5);
    let mut sim = Sim::with_rng(Rng::from_test_seed(7).for_shard(shard));
    let invite = establish_outbound(&mut sim);
    // What the carrier sees carries the label in front of 16 random hex digits.
    for t in tokens(&invite) {
        let random = t
            .strip_prefix("s5-")
            .unwrap_or_else(|| panic!("unlabelled {t}"));
        parse_token(random);
    }
    // The carrier's answers (our branch) and its in-dialog requests (our tag in To).
    let ok = carrier_response(&invite, 200, "OK", Some("ctag1"), None);
    let ok =
        Message::parse(Bytes::from(ok.replace('\n', "\r\n")), &Limits::default()).expect("parses");
    assert_eq!(route(&ok, 8), shard);
    let our_outside_tag = invite.from().tag().unwrap_or_default().to_owned();
    let bye = format!(
        "BYE sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKcarbye
Max-Forwards: 70
From: <sip:15551234567@198.51.100.7>;tag=ctag1
To: <sip:100@203.0.113.1>;tag={our_outside_tag}
Call-ID: {}
CSeq: 5 BYE
Content-Length: 0

",
        invite.call_id()
    );
    let bye =
        Message::parse(Bytes::from(bye.replace('\n', "\r\n")), &Limits::default()).expect("parses");
    assert_eq!(route(&bye, 8), shard);
    // The PBX's in-dialog requests carry the caller leg's tag, minted by the shard too.
    let inside_tag = sim
        .sbc
        .calls
        .values()
        .next()
        .map(|c| c.leg(Side::Inside).local_tag().to_owned())
        .unwrap_or_default();
    assert!(inside_tag.starts_with("s5-"), "{inside_tag}");
}
