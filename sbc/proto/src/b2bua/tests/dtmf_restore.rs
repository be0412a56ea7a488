//! DTMF interworking across a restart (`codec_snapshot.rs`, snapshot schema version 3): a call
//! with the PBX on SIP INFO and the carrier on RFC 4733, restored into a fresh B2BUA, keeps its
//! DTMF methods — even when the configuration changed meanwhile — and its relay is told again
//! which leg's events it terminates, so an INFO from the PBX still becomes generated events.
//! A version 2 record (no codecs) still restores; its INFO crosses as it came.

use super::dtmf::{drain, pbx_info};
use super::*;
use crate::{b2bua::DtmfMode, media::dtmf::StreamDtmf};

fn config_with(pbx: DtmfMode, trunk: DtmfMode) -> B2buaConfig {
    let mut cfg = config();
    cfg.pbx_media.dtmf = pbx;
    cfg.trunks[0].media.dtmf = trunk;
    cfg
}

/// An outbound call answered under `before`, its record (JSON, changed by `edit`) restored 2 s
/// later into a B2BUA configured `after`.
fn restarted(
    before: B2buaConfig,
    after: B2buaConfig,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Sim {
    let mut old = Sim::new();
    old.sbc.set_config(before);
    establish_outbound(&mut old);
    let snap = std::iter::from_fn(|| old.sbc.poll_event())
        .filter_map(|e| match e {
            Event::CallState(s) => Some(*s),
            _ => None,
        })
        .last()
        .expect("the answer reports the call's state");
    let mut json: serde_json::Value = serde_json::from_slice(&snap.encode()).expect("JSON");
    edit(&mut json);
    let bytes = serde_json::to_vec(&json).expect("JSON");
    let mut sim = Sim::new();
    sim.sbc.set_config(after);
    sim.now = old.now + Duration::from_secs(2);
    let snap = CallSnapshot::decode(&bytes)
        .expect("record decodes")
        .aged(Duration::from_secs(2));
    sim.with_media(|b, now, m| b.restore(now, &snap, m))
        .expect("restorable");
    sim
}

/// What the restored call makes of an INFO digit from the PBX: the payload type of the events
/// generated toward the carrier (None: no events), and whether the INFO crossed.
fn info_digit(sim: &mut Sim) -> (Option<u8>, bool) {
    let _ = drain(sim);
    let info = pbx_info(sim, "application/dtmf-relay", "Signal=4\nDuration=120\n");
    sim.deliver(pbx(), &info);
    sim.take_pbx();
    let crossed = sim
        .take_carrier()
        .iter()
        .any(|m| m.method() == Some(&Method::Info));
    let generated = drain(sim).into_iter().find_map(|e| match e {
        Event::GenerateDtmf { payload_type, .. } => Some(payload_type),
        _ => None,
    });
    (generated, crossed)
}

#[test]
fn a_restored_call_keeps_its_dtmf_methods_and_relay_terminations() {
    let cfg = config_with(DtmfMode::Info, DtmfMode::Rfc4733);
    let mut sim = restarted(cfg.clone(), cfg, |_| {});
    let s = sim.media.first().expect("restored session");
    assert_eq!(
        s.dtmf,
        [StreamDtmf {
            terminated: [None, Some(101)]
        }],
        "the relay terminates the carrier's events again"
    );
    assert_eq!(info_digit(&mut sim), (Some(101), false));
}

#[test]
fn a_restored_call_keeps_its_dtmf_methods_across_a_configuration_change() {
    // The operator switched the PBX to RFC 4733 while the process was down: the running call's
    // SDP was negotiated for INFO (no telephone-event toward the PBX), so it stays on INFO.
    let mut sim = restarted(
        config_with(DtmfMode::Info, DtmfMode::Rfc4733),
        config_with(DtmfMode::Rfc4733, DtmfMode::Rfc4733),
        |_| {},
    );
    assert_eq!(info_digit(&mut sim), (Some(101), false));
}

#[test]
fn a_version_2_record_without_codecs_still_restores() {
    let cfg = config_with(DtmfMode::Info, DtmfMode::Rfc4733);
    let mut sim = restarted(cfg.clone(), cfg, |json| {
        let map = json.as_object_mut().expect("a record object");
        assert!(map.remove("codecs").is_some(), "version 3 writes codecs");
        map.insert("v".into(), 2.into());
    });
    let s = sim.media.first().expect("restored session");
    assert!(s.dtmf.iter().all(StreamDtmf::is_none), "{:?}", s.dtmf);
    // Nothing tells the call the carrier's telephone-event until the next offer: the INFO
    // crosses as it came (docs/media-policy.md, "DTMF").
    assert_eq!(info_digit(&mut sim), (None, true));
}
