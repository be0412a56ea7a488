//! SIPp scenarios built from steps, and a runner that starts SIPp in a namespace. The steps
//! are the PBX's or the carrier's side of a call flow; the XML follows SIPp's scenario format
//! (keywords such as `[last_Via:]`, `[next_url]`, `[peer_tag_param]`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::process::Owned;

/// SDP direction attribute used in offers and answers.
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    /// `a=sendrecv`
    SendRecv,
    /// `a=sendonly` (hold)
    SendOnly,
    /// `a=recvonly` (answer to hold)
    RecvOnly,
}

impl Dir {
    fn attr(self) -> &'static str {
        match self {
            Dir::SendRecv => "sendrecv",
            Dir::SendOnly => "sendonly",
            Dir::RecvOnly => "recvonly",
        }
    }
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Step {
    /// UAC: send the INVITE (with an SDP offer when `sdp`).
    Invite { sdp: bool },
    /// UAC: send the INVITE with an SDP offer and `Supported: 100rel` (RFC 3262).
    InviteRel,
    /// UAC: expect a reliable provisional and remember its RSeq.
    RecvReliable { code: u16 },
    /// UAC: PRACK the last reliable provisional (CSeq `cseq`).
    Prack { cseq: u32 },
    /// UAS: send a reliable provisional (`Require: 100rel`, `RSeq: 1`).
    RespondReliable { code: u16, reason: &'static str },
    /// UAS: answer the initial INVITE after a PRACK arrived in between: the INVITE's Via
    /// (saved when it arrived); From, To (tagged) and Call-ID are the PRACK's, which match.
    RespondToSavedInvite {
        code: u16,
        reason: &'static str,
        sdp: Option<Dir>,
    },
    /// Expect a response (`optional` for 100/18x that may not come).
    Recv { code: u16, optional: bool },
    /// UAC: ACK the 2xx of INVITE `cseq` (end-to-end, [next_url]); `sdp` carries an answer.
    Ack2xx { sdp: bool, cseq: u32 },
    /// UAC: ACK a non-2xx final (same branch as the INVITE).
    AckNon2xx,
    /// UAC: CANCEL the INVITE.
    Cancel,
    /// Send an in-dialog request (re-INVITE, UPDATE, BYE, INFO…) with this CSeq; `sdp` adds
    /// an offer with direction `dir`. `uac` picks the dialog role for From/To.
    InDialog {
        method: &'static str,
        cseq: u32,
        sdp: Option<Dir>,
        uac: bool,
    },
    /// Expect a request.
    RecvRequest { method: &'static str },
    /// Answer the pending initial INVITE after another request (CANCEL) arrived in between:
    /// CSeq `1 INVITE`, our To tag.
    RespondToInvite { code: u16, reason: &'static str },
    /// Answer the last request with `code` (adds our To tag on the first response to INVITE;
    /// `sdp` adds an SDP body with direction `dir`).
    Respond {
        code: u16,
        reason: &'static str,
        sdp: Option<Dir>,
    },
    /// UAS: challenge the last request with 401 (`WWW-Authenticate`) or 407
    /// (`Proxy-Authenticate`), realm `sipp.carrier`, `qop="auth"`. A challenged INVITE gets a
    /// To tag of its own: the authenticated retry starts over without one.
    Challenge { code: u16 },
    /// UAS: expect a request carrying digest credentials in `header` (`Authorization` or
    /// `Proxy-Authorization`) for user `user`; the call fails if they are missing.
    RecvAuthorized {
        method: &'static str,
        header: &'static str,
        user: &'static str,
    },
    /// Expect a request and check it: each `(header, regex)` must match, searched in that
    /// header (e.g. `"X-Account:"`) or, with an empty header, in the whole message (e.g.
    /// `"^INVITE sip:\\+4930@"` for the request line). A mismatch fails the call.
    RecvChecked {
        method: &'static str,
        checks: &'static [(&'static str, &'static str)],
    },
    /// Wait.
    Pause { ms: u32 },
    /// Start sending the RTP of a pcap file to the peer's SDP address (SIPp's
    /// `play_pcap_audio`; runs alongside the following steps).
    PlayPcap { path: &'static str },
    /// UAC: expect a 401/407 whose challenge the next [`Step::InviteAuthenticated`] answers.
    RecvChallenge { code: u16 },
    /// UAC: the INVITE again after a challenge (RFC 3261 §22.2: same Call-ID and From tag,
    /// CSeq 2), with SIPp's digest answer computed for `user`/`password` over its
    /// Request-URI.
    InviteAuthenticated {
        user: &'static str,
        password: &'static str,
    },
    /// UAS: expect a request and verify its digest credentials in `Authorization` (SIPp
    /// `verifyauth`: the response recomputed with `user`/`password`; SIPp reads only
    /// `Authorization`, so this verifies answers to a 401); the call fails if they are wrong.
    RecvVerified {
        method: &'static str,
        user: &'static str,
        password: &'static str,
    },
}

/// The callee of a plain answered call: INVITE → 180, 200 with an answer; then ACK, and BYE →
/// 200.
pub fn answering_callee() -> Vec<Step> {
    answering_callee_checking(&[])
}

/// [`answering_callee`] that first checks the INVITE (see [`Step::RecvChecked`]).
pub fn answering_callee_checking(checks: &'static [(&'static str, &'static str)]) -> Vec<Step> {
    let first = if checks.is_empty() {
        Step::RecvRequest { method: "INVITE" }
    } else {
        Step::RecvChecked {
            method: "INVITE",
            checks,
        }
    };
    let mut s = vec![first];
    s.extend(answered_callee().into_iter().skip(1));
    s.extend(answer_bye());
    s
}

/// The callee of an answered call up to the ACK: INVITE → 180, 200 with an answer, ACK.
/// Append what the call does next ([`ending`]).
pub fn answered_callee() -> Vec<Step> {
    vec![
        Step::RecvRequest { method: "INVITE" },
        Step::Respond {
            code: 180,
            reason: "Ringing",
            sdp: None,
        },
        Step::Respond {
            code: 200,
            reason: "OK",
            sdp: Some(Dir::SendRecv),
        },
        Step::RecvRequest { method: "ACK" },
    ]
}

/// The caller of an answered call up to its ACK: INVITE with an offer, 100 and 180 when they
/// come, the 200, ACK. Append what the call does next ([`ending`]).
pub fn answered_caller() -> Vec<Step> {
    vec![
        Step::Invite { sdp: true },
        Step::Recv {
            code: 100,
            optional: true,
        },
        Step::Recv {
            code: 180,
            optional: true,
        },
        Step::Recv {
            code: 200,
            optional: false,
        },
        Step::Ack2xx {
            sdp: false,
            cseq: 1,
        },
    ]
}

/// Hangs up an answered call: BYE (the caller's second request, the callee's first; `uac`
/// says which side this is), then its 200.
pub fn hang_up(uac: bool) -> [Step; 2] {
    [
        Step::InDialog {
            method: "BYE",
            cseq: if uac { 2 } else { 1 },
            sdp: None,
            uac,
        },
        Step::Recv {
            code: 200,
            optional: false,
        },
    ]
}

/// Waits for the other side's (or the SBC's) BYE and answers it 200.
pub fn answer_bye() -> [Step; 2] {
    [
        Step::RecvRequest { method: "BYE" },
        Step::Respond {
            code: 200,
            reason: "OK",
            sdp: None,
        },
    ]
}

/// The end of an answered call: hang up after `hang_up_after_ms` when given, else wait for
/// the BYE.
pub fn ending(uac: bool, hang_up_after_ms: Option<u32>) -> Vec<Step> {
    match hang_up_after_ms {
        Some(ms) => {
            let mut s = vec![Step::Pause { ms }];
            s.extend(hang_up(uac));
            s
        }
        None => answer_bye().to_vec(),
    }
}

/// Escapes a value for an XML attribute.
fn xml_attr(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A whole scenario: `uac` decides the tag used for our side (SIPpTag00 vs 01).
pub fn scenario(name: &str, uac: bool, steps: &[Step]) -> String {
    let mut x = String::new();
    let _ = writeln!(
        x,
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">"
    );
    let our_tag = if uac {
        "[pid]SIPpTag00[call_number]"
    } else {
        "[pid]SIPpTag01[call_number]"
    };
    // Only a UAS adds its To tag, on its first response to the initial INVITE.
    let mut first_invite_response = !uac;
    // SIPp refuses variables that are set but never read: capture the caller's From only if a
    // callee-side request will use it.
    let needs_from = !uac
        && steps
            .iter()
            .any(|s| matches!(s, Step::InDialog { uac: false, .. }));
    let needs_invite = !uac
        && steps
            .iter()
            .any(|s| matches!(s, Step::RespondToSavedInvite { .. }));
    for step in steps {
        match step {
            Step::Invite { sdp } => {
                let body = if *sdp {
                    sdp_body(Dir::SendRecv)
                } else {
                    String::new()
                };
                let ct = if *sdp {
                    "Content-Type: application/sdp\n"
                } else {
                    ""
                };
                let _ = write!(
                    x,
                    "<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\nUser-Agent: SIPp-UA-[pid]\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::Recv { code, optional } => {
                let rrs = if (200..300).contains(code) || (180..190).contains(code) {
                    " rrs=\"true\""
                } else {
                    ""
                };
                let _ = writeln!(
                    x,
                    "<recv response=\"{code}\" optional=\"{optional}\"{rrs}/>"
                );
            }
            Step::Ack2xx { sdp, cseq } => {
                let body = if *sdp {
                    sdp_body(Dir::SendRecv)
                } else {
                    String::new()
                };
                let ct = if *sdp {
                    "Content-Type: application/sdp\n"
                } else {
                    ""
                };
                let _ = write!(
                    x,
                    "<send><![CDATA[\nACK [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\n[last_To:]\nCall-ID: [call_id]\nCSeq: {cseq} ACK\nMax-Forwards: 70\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::AckNon2xx => {
                let _ = write!(
                    x,
                    "<send><![CDATA[\nACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
                );
            }
            Step::Cancel => {
                // Same branch as the INVITE: SIPp's [branch] changes per message, so reuse the
                // Via of the last response (which echoes the INVITE's).
                let _ = write!(
                    x,
                    "<send><![CDATA[\nCANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
                );
            }
            Step::InDialog {
                method,
                cseq,
                sdp,
                uac: is_uac,
            } => {
                let body = sdp.map(sdp_body).unwrap_or_default();
                let ct = if sdp.is_some() {
                    "Content-Type: application/sdp\n"
                } else {
                    ""
                };
                let (from, to) = if *is_uac {
                    (
                        format!("sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}"),
                        "[last_To:]".to_owned(),
                    )
                } else {
                    // A UAS SIPp knows no remote address: the caller's From (with its tag),
                    // captured from the INVITE, is the To of our requests.
                    (
                        format!("<sip:sipp@[local_ip]:[local_port]>;tag={our_tag}"),
                        "To: [$remote_from]".to_owned(),
                    )
                };
                let _ = write!(
                    x,
                    "<send retrans=\"500\"><![CDATA[\n{method} [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: {from}\n{to}\nCall-ID: [call_id]\nCSeq: {cseq} {method}\nContact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::RecvRequest { method }
                if *method == "INVITE" && needs_invite && first_invite_response =>
            {
                let _ = writeln!(
                    x,
                    "<recv request=\"INVITE\" rrs=\"true\"><action><ereg regexp=\".*\" search_in=\"hdr\" header=\"Via:\" check_it=\"true\" assign_to=\"inv_via\"/></action></recv>"
                );
            }
            Step::RecvRequest { method }
                if *method == "INVITE" && needs_from && first_invite_response =>
            {
                let _ = writeln!(
                    x,
                    "<recv request=\"INVITE\" rrs=\"true\"><action><ereg regexp=\".*\" search_in=\"hdr\" header=\"From:\" check_it=\"true\" assign_to=\"remote_from\"/></action></recv>"
                );
            }
            Step::RecvRequest { method } => {
                let rrs = if *method == "INVITE" {
                    " rrs=\"true\""
                } else {
                    ""
                };
                let _ = writeln!(x, "<recv request=\"{method}\"{rrs}/>");
            }
            Step::Respond { code, reason, sdp } => {
                let body = sdp.map(sdp_body).unwrap_or_default();
                let ct = if sdp.is_some() {
                    "Content-Type: application/sdp\n"
                } else {
                    ""
                };
                // The first response to the initial INVITE adds our To tag; later ones reuse it
                // ([last_To:] of in-dialog requests already carries it).
                let to = if first_invite_response && !matches!(code, 100) {
                    first_invite_response = false;
                    format!("[last_To:];tag={our_tag}")
                } else {
                    "[last_To:]".to_owned()
                };
                let _ = write!(
                    x,
                    "<send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n{to}\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:sipp@[local_ip]:[local_port]>\nServer: SIPp-Server-Agent\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::RespondToInvite { code, reason } => {
                let _ = write!(
                    x,
                    "<send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n[last_To:];tag={our_tag}\n[last_Call-ID:]\nCSeq: 1 INVITE\nContent-Length: 0\n\n]]></send>\n"
                );
            }
            Step::Challenge { code } => {
                let (reason, name) = if *code == 401 {
                    ("Unauthorized", "WWW-Authenticate")
                } else {
                    ("Proxy Authentication Required", "Proxy-Authenticate")
                };
                let to = if first_invite_response {
                    "[last_To:];tag=[pid]SIPpChal[call_number]"
                } else {
                    "[last_To:]"
                };
                let _ = write!(
                    x,
                    "<send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n{to}\n[last_Call-ID:]\n[last_CSeq:]\n{name}: Digest realm=\"sipp.carrier\", nonce=\"[pid]n[call_number]\", qop=\"auth\", algorithm=MD5\nContent-Length: 0\n\n]]></send>\n"
                );
            }
            Step::RecvAuthorized {
                method,
                header,
                user,
            } => {
                let rrs = if *method == "INVITE" {
                    " rrs=\"true\""
                } else {
                    ""
                };
                // check_it fails the call when the header does not match; the log action
                // reads the variable (SIPp refuses variables that are never read).
                let _ = writeln!(
                    x,
                    "<recv request=\"{method}\"{rrs}><action><ereg regexp=\"Digest username=.{user}.*response=\" search_in=\"hdr\" header=\"{header}:\" check_it=\"true\" assign_to=\"creds\"/><log message=\"[$creds]\"/></action></recv>"
                );
            }
            Step::RecvChecked { method, checks } => {
                let rrs = if *method == "INVITE" {
                    " rrs=\"true\""
                } else {
                    ""
                };
                let _ = write!(x, "<recv request=\"{method}\"{rrs}><action>");
                let mut vars = Vec::new();
                for (i, (header, regexp)) in checks.iter().enumerate() {
                    let var = format!("chk{i}");
                    let regexp = xml_attr(regexp);
                    if header.is_empty() {
                        let _ = write!(
                            x,
                            "<ereg regexp=\"{regexp}\" search_in=\"msg\" check_it=\"true\" assign_to=\"{var}\"/>"
                        );
                    } else {
                        let _ = write!(
                            x,
                            "<ereg regexp=\"{regexp}\" search_in=\"hdr\" header=\"{header}\" check_it=\"true\" assign_to=\"{var}\"/>"
                        );
                    }
                    vars.push(format!("[${var}]"));
                }
                // SIPp refuses variables that are never read: log them all.
                let _ = writeln!(x, "<log message=\"{}\"/></action></recv>", vars.join(" "));
            }
            Step::Pause { ms } => {
                let _ = writeln!(x, "<pause milliseconds=\"{ms}\"/>");
            }
            Step::InviteRel => {
                let body = sdp_body(Dir::SendRecv);
                let _ = write!(
                    x,
                    "<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\nSupported: 100rel\nUser-Agent: SIPp-UA-[pid]\nContent-Type: application/sdp\nContent-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::RecvReliable { code } => {
                let _ = writeln!(
                    x,
                    "<recv response=\"{code}\" rrs=\"true\"><action><ereg regexp=\"[0-9]+\" search_in=\"hdr\" header=\"RSeq:\" check_it=\"true\" assign_to=\"rseq\"/></action></recv>"
                );
            }
            Step::Prack { cseq } => {
                let _ = write!(
                    x,
                    "<send retrans=\"500\"><![CDATA[\nPRACK [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[routes]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\n[last_To:]\nCall-ID: [call_id]\nCSeq: {cseq} PRACK\nRAck: [$rseq] 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
                );
            }
            Step::RespondReliable { code, reason } => {
                first_invite_response = false;
                let _ = write!(
                    x,
                    "<send retrans=\"500\"><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n[last_To:];tag={our_tag}\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:sipp@[local_ip]:[local_port]>\nRequire: 100rel\nRSeq: 1\nContent-Length: 0\n\n]]></send>\n"
                );
            }
            Step::RespondToSavedInvite { code, reason, sdp } => {
                let body = sdp.map(sdp_body).unwrap_or_default();
                let ct = if sdp.is_some() {
                    "Content-Type: application/sdp\n"
                } else {
                    ""
                };
                let _ = write!(
                    x,
                    "<send><![CDATA[\nSIP/2.0 {code} {reason}\nVia: [$inv_via]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\nCSeq: 1 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\n{ct}Content-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::RecvChallenge { code } => {
                let _ = writeln!(x, "<recv response=\"{code}\" auth=\"true\"/>");
            }
            Step::InviteAuthenticated { user, password } => {
                let body = sdp_body(Dir::SendRecv);
                let _ = write!(
                    x,
                    "<send retrans=\"500\"><![CDATA[\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag={our_tag}\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 2 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\n[authentication username={user} password={password}]\nMax-Forwards: 70\nUser-Agent: SIPp-UA-[pid]\nContent-Type: application/sdp\nContent-Length: [len]\n\n{body}]]></send>\n"
                );
            }
            Step::RecvVerified {
                method,
                user,
                password,
            } => {
                let rrs = if *method == "INVITE" {
                    " rrs=\"true\""
                } else {
                    ""
                };
                // A wrong digest jumps to a wait that times out, which fails the call.
                let n = x.len();
                let _ = writeln!(
                    x,
                    "<recv request=\"{method}\"{rrs}><action><verifyauth assign_to=\"authok{n}\" username=\"{user}\" password=\"{password}\"/></action></recv>\n<nop hide=\"true\" test=\"authok{n}\" next=\"good{n}\"/>\n<recv request=\"NEVER\" timeout=\"200\"/>\n<label id=\"good{n}\"/>"
                );
            }
            Step::PlayPcap { path } => {
                let _ = writeln!(
                    x,
                    "<nop><action><exec play_pcap_audio=\"{path}\"/></action></nop>"
                );
            }
        }
    }
    x.push_str("<ResponseTimeRepartition value=\"10, 20, 50, 100, 500\"/>\n</scenario>\n");
    x
}

fn sdp_body(dir: Dir) -> String {
    format!(
        "v=0\no=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\na={}\n",
        dir.attr()
    )
}

/// Writes `xml` to a unique file in the temp dir; removed when the returned guard drops.
pub fn write_scenario(name: &str, xml: &str) -> TempFile {
    let path = std::env::temp_dir().join(format!("sbc-{}-{name}.xml", crate::netns::unique("sc")));
    std::fs::write(&path, xml).expect("write scenario");
    TempFile(path)
}

/// A file removed on drop.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts SIPp in namespace `ns` with `scenario`, bound to `local` ("ip:port"); `dest` for a
/// UAC. Bounded: SIPp gives up after 60 s (`-timeout`), and fails then (`-timeout_error`).
pub fn run(ns: &str, scenario: &Path, local: &str, dest: Option<&str>, extra: &[&str]) -> Owned {
    run_service(ns, scenario, local, dest, "15551234567", extra)
}

/// Like [`run`], dialling `service` (the Request-URI user of a UAC's INVITE).
pub fn run_service(
    ns: &str,
    scenario: &Path,
    local: &str,
    dest: Option<&str>,
    service: &str,
    extra: &[&str],
) -> Owned {
    let (ip, port) = local.rsplit_once(':').expect("ip:port");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        "sipp",
        "-nostdin",
        "-timeout",
        "60",
        "-timeout_error",
    ])
    .arg("-sf")
    .arg(scenario)
    .args(["-i", ip, "-p", port, "-m", "1"])
    .args(extra);
    // SIPP_TRACE_DIR=<dir> keeps SIPp's message logs there (debugging a failing flow).
    if let Some(dir) = std::env::var_os("SIPP_TRACE_DIR") {
        cmd.arg("-trace_msg").current_dir(dir);
    }
    if let Some(d) = dest {
        cmd.args(["-s", service, d]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sipp (cargo xtask setup installs sip-tester)");
    Owned::new("sipp", child)
}

/// Starts SIPp in namespace `ns` with the given arguments (built-in scenarios such as `-sn
/// uac`, rates, counts). Bounded like [`run`]: SIPp gives up after 60 s and fails then.
pub fn run_args(ns: &str, args: &[&str]) -> Owned {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sipp",
            "-nostdin",
            "-timeout",
            "60",
            "-timeout_error",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sipp (cargo xtask setup installs sip-tester)");
    Owned::new("sipp", child)
}

/// Waits (at most 90 s) for a SIPp run to end and asserts that it succeeded: SIPp exits
/// non-zero when a call failed.
pub fn wait_ok(mut p: Owned, what: &str) {
    let status = p
        .wait_timeout(std::time::Duration::from_secs(90))
        .unwrap_or_else(|| panic!("{what} did not finish"));
    assert!(
        status.success(),
        "{what} failed: {status} (SIPp exits non-zero when a call fails)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_invite_scenario_uses_what_it_captures() {
        let x = scenario(
            "t",
            false,
            &[
                Step::RecvRequest { method: "INVITE" },
                Step::RespondReliable {
                    code: 180,
                    reason: "Ringing",
                },
                Step::RecvRequest { method: "PRACK" },
                Step::Respond {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
                Step::RespondToSavedInvite {
                    code: 200,
                    reason: "OK",
                    sdp: None,
                },
            ],
        );
        println!("{x}");
        assert!(x.contains("assign_to=\"inv_via\""));
        assert!(x.contains("Via: [$inv_via]"));
    }
}
