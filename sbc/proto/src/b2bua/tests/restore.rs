//! Restart recovery: an answered call's snapshot, taken from one B2BUA, restored into a fresh
//! one (new process, new media relay) — BYE from either side ends both legs, a re-INVITE
//! works, an older schema version restores, and what cannot be restored is hung up.

use super::*;

/// The call state events queued so far: the last snapshot and the ended keys.
fn state_events(sim: &mut Sim) -> (Option<CallSnapshot>, Vec<StateKey>) {
    let (mut snap, mut ended) = (None, Vec::new());
    while let Some(e) = sim.sbc.poll_event() {
        match e {
            Event::CallState(s) => snap = Some(*s),
            Event::CallStateEnded { key } => ended.push(key),
            _ => {}
        }
    }
    (snap, ended)
}

/// A call set up in one B2BUA, its record written (encoded) and the process gone: a fresh
/// simulation 2 s later with the record restored into it.
fn restarted() -> (Sim, CallSnapshot) {
    let mut old = Sim::new();
    establish_outbound(&mut old);
    let (snap, _) = state_events(&mut old);
    let bytes = snap.expect("the answer reports the call's state").encode();
    let mut sim = Sim::new();
    sim.now = old.now + Duration::from_secs(2);
    let snap = CallSnapshot::decode(&bytes)
        .expect("own record decodes")
        .aged(Duration::from_secs(2));
    sim.with_media(|b, now, m| b.restore(now, &snap, m))
        .expect("restorable");
    (sim, snap)
}

fn pbx_bye(snap: &CallSnapshot, cseq: u32) -> String {
    let leg = snap.leg(Side::Inside);
    format!(
        "BYE sip:sbc@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bKpbxbye{cseq};rport
Max-Forwards: 70
From: {}
To: {}
Call-ID: {}
CSeq: {cseq} BYE
Content-Length: 0

",
        leg.remote_hdr, leg.local_hdr, leg.call_id
    )
}

fn carrier_request(snap: &CallSnapshot, method: &str, cseq: u32, sdp: Option<&str>) -> String {
    let leg = snap.leg(Side::Outside);
    let head = format!(
        "{method} sip:sbc@203.0.113.1:5080 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5090;branch=z9hG4bKcar{method}{cseq};rport
Max-Forwards: 70
From: {}
To: {}
Call-ID: {}
CSeq: {cseq} {method}
Contact: <sip:gw@198.51.100.20:5060>
",
        leg.remote_hdr, leg.local_hdr, leg.call_id
    );
    match sdp {
        Some(s) => with_body(&head, s),
        None => format!("{head}Content-Length: 0\n\n"),
    }
}

fn methods(msgs: &[Message]) -> Vec<Option<Method>> {
    msgs.iter().map(|m| m.method().cloned()).collect()
}

#[test]
fn restored_call_bye_from_the_pbx_ends_the_carrier_leg() {
    let (mut sim, snap) = restarted();
    sim.deliver(pbx(), &pbx_bye(&snap, 11));
    let out = sim.take_carrier();
    assert_eq!(
        methods(&out),
        [Some(Method::Bye)],
        "BYE relayed to the carrier"
    );
    let bye = &out[0];
    let leg = snap.leg(Side::Outside);
    assert_eq!(bye.call_id(), leg.call_id);
    assert_eq!(bye.from().tag(), Some(leg.local_tag.as_str()));
    assert_eq!(bye.to().tag(), leg.remote_tag.as_deref());
    assert!(
        bye.cseq().seq > leg.local_cseq + crate::b2bua::restore::CSEQ_GAP,
        "the carrier leg's CSeq continues past what may have been lost with the process"
    );
    assert_eq!(bye.request_uri_str(), Some("sip:gw@198.51.100.20:5060"));
    sim.deliver(carrier(), &carrier_response(bye, 200, "OK", None, None));
    assert_eq!(sim.take_pbx().iter().map(status).collect::<Vec<_>>(), [200]);
    let (_, ended) = state_events(&mut sim);
    assert_eq!(
        ended,
        std::slice::from_ref(&snap.key),
        "the record is deleted"
    );
    sim.assert_clean();
}

#[test]
fn restored_call_bye_from_the_carrier_ends_the_pbx_leg() {
    let (mut sim, snap) = restarted();
    sim.deliver(carrier(), &carrier_request(&snap, "BYE", 3, None));
    let out = sim.take_pbx();
    assert_eq!(methods(&out), [Some(Method::Bye)], "BYE relayed to the PBX");
    let bye = &out[0];
    assert_eq!(bye.call_id(), "pbx-call-1");
    assert_eq!(bye.to().tag(), Some("ptag1"));
    assert_eq!(bye.request_uri_str(), Some("sip:100@10.0.0.10:5070"));
    sim.deliver(pbx(), &pbx_response(bye, 200, "OK", None));
    assert_eq!(
        sim.take_carrier().iter().map(status).collect::<Vec<_>>(),
        [200]
    );
    let (_, ended) = state_events(&mut sim);
    assert_eq!(ended, std::slice::from_ref(&snap.key));
    sim.assert_clean();
}

#[test]
fn restored_call_reinvite_keeps_the_relay_ports_and_is_persisted_again() {
    let (mut sim, snap) = restarted();
    let relay_out = snap.media.as_ref().expect("media recorded").streams[0].relay_inside;
    let hold = SDP_CARRIER
        .replace("a=sendrecv", "a=sendonly")
        .replace("777 1", "777 2");
    sim.deliver(carrier(), &carrier_request(&snap, "INVITE", 4, Some(&hold)));
    assert_eq!(
        sim.take_carrier().iter().map(status).collect::<Vec<_>>(),
        [100]
    );
    let reinvite = sim.take_pbx().remove(0);
    assert_eq!(reinvite.method(), Some(&Method::Invite));
    let body = String::from_utf8_lossy(reinvite.body()).to_string();
    assert!(body.contains("a=sendonly"), "{body}");
    assert!(
        body.contains(&format!("m=audio {} ", relay_out.rtp)),
        "the restored relay port stays in the PBX's SDP: {body}"
    );
    let version = snap.leg(Side::Inside).sdp_version;
    assert!(
        body.contains(&format!(" {} IN IP4", version + 1)),
        "o= version continues from the record ({version}): {body}"
    );
    let (offered, _) = state_events(&mut sim);
    assert!(offered.is_some(), "the relayed offer changed the state");
    let answer = SDP_PBX
        .replace("a=sendrecv", "a=recvonly")
        .replace("1234 1", "1234 2");
    sim.deliver(pbx(), &pbx_response(&reinvite, 200, "OK", Some(&answer)));
    let ok = sim.take_carrier().remove(0);
    assert_eq!(status(&ok), 200);
    assert!(String::from_utf8_lossy(ok.body()).contains("a=recvonly"));
    assert_eq!(methods(&sim.take_pbx()), [Some(Method::Ack)]);
    let (changed, _) = state_events(&mut sim);
    let changed = changed.expect("the re-INVITE's answer is persisted");
    assert_eq!(changed.key, snap.key);
    assert_eq!(changed.leg(Side::Inside).sdp_version, version + 1);
    assert_eq!(
        changed.leg(Side::Outside).sdp_version,
        snap.leg(Side::Outside).sdp_version + 1,
        "the answer written to the carrier"
    );
    let media = changed.media.expect("media");
    assert_eq!(
        media.streams[0].sdp_inside.map(|d| d.dir),
        Some(crate::media::snapshot::DirSnapshot::RecvOnly),
        "the PBX's answer is in the record"
    );
    // And the call still ends cleanly.
    sim.deliver(pbx(), &pbx_bye(&snap, 12));
    let bye = sim.take_carrier().remove(0);
    sim.deliver(carrier(), &carrier_response(&bye, 200, "OK", None, None));
    sim.assert_clean();
}

#[test]
fn snapshot_is_reported_once_per_change() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let count = |sim: &mut Sim| {
        std::iter::from_fn(|| sim.sbc.poll_event())
            .filter(|e| matches!(e, Event::CallState(_)))
            .count()
    };
    assert_eq!(
        count(&mut sim),
        1,
        "one record for the answer (the ACK changes nothing)"
    );
    // Timers that change nothing write nothing.
    sim.advance(Duration::from_secs(60));
    assert_eq!(count(&mut sim), 0);
}

#[test]
fn a_latch_without_a_sip_message_is_reported() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let (snap, _) = state_events(&mut sim);
    let snap = snap.expect("the answer's record");
    let session = crate::media::SessionId(snap.media_session.expect("media"));
    // From the trunk's signaling address, not the SDP's (a NAT'd media gateway): allowed.
    let carrier_media: std::net::SocketAddr = "198.51.100.7:40000".parse().expect("literal");
    let stream = crate::media::StreamKey { session, index: 0 };
    // The carrier's first RTP packet latches the outside leg: no SIP message, only the
    // relay's event, taken in on the next timer or tick.
    sim.media
        .send_rtp(sim.now, stream, crate::net::Side::Outside, carrier_media, 1);
    sim.with_media(|b, now, m| b.handle_timeout(now, m));
    let (changed, _) = state_events(&mut sim);
    let changed = changed.expect("the latch is written");
    let media = changed.media.expect("media");
    assert_eq!(
        media.streams[0].latched(crate::net::Side::Outside),
        Some(carrier_media)
    );
    // The same latch again changes nothing: nothing written.
    sim.media
        .send_rtp(sim.now, stream, crate::net::Side::Outside, carrier_media, 2);
    sim.with_media(|b, now, m| b.handle_timeout(now, m));
    assert!(
        state_events(&mut sim).0.is_none(),
        "unchanged: not re-written"
    );
}

#[test]
fn a_message_that_changes_nothing_builds_no_record() {
    let mut sim = Sim::new();
    establish_outbound(&mut sim);
    let snap = state_events(&mut sim).0.expect("the answer's record");
    sim.take_pbx();
    sim.take_carrier();
    let built = sim.media.snapshots();
    // The PBX's INFO is relayed: the SBC's CSeq on the carrier leg moves, the record is
    // written once.
    let info = pbx_bye(&snap, 20).replace("BYE", "INFO");
    sim.deliver(pbx(), &info);
    let relayed = sim.take_carrier().remove(0);
    assert_eq!(
        sim.media.snapshots(),
        built + 1,
        "changed: one record built"
    );
    assert!(state_events(&mut sim).0.is_some(), "and written");
    // The carrier's 200 goes back to the PBX: the call is touched but nothing of its record
    // changed — no record built, nothing written.
    sim.deliver(
        carrier(),
        &carrier_response(&relayed, 200, "OK", None, None),
    );
    assert_eq!(sim.take_pbx().len(), 1, "the 200 relayed");
    assert_eq!(
        sim.media.snapshots(),
        built + 1,
        "unchanged: no record built"
    );
    assert!(
        state_events(&mut sim).0.is_none(),
        "unchanged: not re-written"
    );
}

/// A record written by schema version 1 (no `called`), committed as it was written.
const V1_RECORD: &str = include_str!("fixtures/call_state_v1.json");

#[test]
fn version_1_record_restores() {
    let snap = CallSnapshot::decode(V1_RECORD.as_bytes()).expect("v1 decodes");
    assert_eq!(snap.v, CallSnapshot::VERSION);
    assert_eq!(
        snap.called, "",
        "the field version 2 added takes its default"
    );
    let mut sim = Sim::new();
    sim.with_media(|b, now, m| b.restore(now, &snap, m))
        .expect("v1 restores");
    sim.deliver(carrier(), &carrier_request(&snap, "BYE", 3, None));
    let bye = sim.take_pbx().remove(0);
    assert_eq!(bye.method(), Some(&Method::Bye));
    sim.deliver(pbx(), &pbx_response(&bye, 200, "OK", None));
    sim.assert_clean();
}

#[test]
fn newer_or_broken_records_are_refused() {
    let newer = V1_RECORD.replacen("\"v\":1", "\"v\":99", 1);
    assert_eq!(
        CallSnapshot::decode(newer.as_bytes()),
        Err(SnapshotError::TooNew(99))
    );
    assert!(matches!(
        CallSnapshot::decode(b"{\"v\":2}"),
        Err(SnapshotError::Malformed(_))
    ));
    let mut snap = CallSnapshot::decode(V1_RECORD.as_bytes()).expect("v1 decodes");
    snap.legs[0].remote_hdr.push_str("\r\nX-Injected: 1");
    let mut sim = Sim::new();
    assert_eq!(
        sim.with_media(|b, now, m| b.restore(now, &snap, m)),
        Err(RestoreError::Invalid("remote_hdr"))
    );
    assert!(!sim.with_media(|b, now, m| b.hang_up(now, &snap, m)));
    sim.assert_clean();
}

#[test]
fn restoring_twice_is_refused() {
    let (mut sim, snap) = restarted();
    assert!(matches!(
        sim.with_media(|b, now, m| b.restore(now, &snap, m)),
        Err(RestoreError::DialogInUse(_))
    ));
    assert_eq!(sim.sbc.stats().calls, 1);
}

#[test]
fn unrestorable_call_is_hung_up_on_both_legs() {
    let mut old = Sim::new();
    establish_outbound(&mut old);
    let (snap, _) = state_events(&mut old);
    let mut snap = snap.expect("state");
    snap.srtp = true;
    let mut sim = Sim::new();
    assert_eq!(
        sim.with_media(|b, now, m| b.restore(now, &snap, m)),
        Err(RestoreError::Srtp)
    );
    assert!(sim.media.is_empty(), "no media installed");
    assert!(sim.with_media(|b, now, m| b.hang_up(now, &snap, m)));
    sim.collect();
    let to_pbx = sim.take_pbx();
    let to_carrier = sim.take_carrier();
    assert_eq!(methods(&to_pbx), [Some(Method::Bye)]);
    assert_eq!(methods(&to_carrier), [Some(Method::Bye)]);
    assert_eq!(to_carrier[0].call_id(), snap.leg(Side::Outside).call_id);
    sim.deliver(pbx(), &pbx_response(&to_pbx[0], 200, "OK", None));
    sim.deliver(
        carrier(),
        &carrier_response(&to_carrier[0], 200, "OK", None, None),
    );
    let (_, ended) = state_events(&mut sim);
    assert_eq!(
        ended,
        std::slice::from_ref(&snap.key),
        "its record is deleted"
    );
    sim.assert_clean();
}

#[test]
fn a_relay_that_cannot_restore_media_refuses_the_call() {
    // The relay's port range changed across the restart: the recorded ports are not its to
    // give, so the media cannot be re-installed where the peers send.
    let (_, snap) = restarted();
    let moved = SimMedia::settings(
        addr("10.0.0.1:0").ip(),
        addr("203.0.113.1:0").ip(),
        30_000,
        30_099,
    );
    let mut sim = Sim::with_relay(moved);
    assert!(matches!(
        sim.with_media(|b, now, m| b.restore(now, &snap, m)),
        Err(RestoreError::Media(_))
    ));
    assert_eq!(sim.sbc.stats().calls, 0);
    let mut without = snap;
    without.media = None;
    assert_eq!(
        sim.with_media(|b, now, m| b.restore(now, &without, m)),
        Err(RestoreError::MediaMissing)
    );
    sim.assert_clean();
}

/// Without a store asking for it (`report_call_state(false)`, the default of a new B2BUA) no
/// call state is computed or reported: the snapshot and its digest are not paid per message.
#[test]
fn no_state_reports_unless_asked() {
    let mut quiet = Sim::new();
    quiet.sbc.report_call_state(false);
    establish_outbound(&mut quiet);
    let (snap, ended) = state_events(&mut quiet);
    assert!(snap.is_none(), "reported without a store");
    assert!(ended.is_empty());
    // The same call with a store: reported.
    let mut asked = Sim::new();
    establish_outbound(&mut asked);
    assert!(state_events(&mut asked).0.is_some(), "reported when asked");
}
