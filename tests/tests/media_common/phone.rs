//! baresip (`baresip-core`) as a phone in a lab namespace: no sound card — it sends a tone
//! (`ausine`) and records what it decodes (`sndfile`); with a keyboard (`stdio` module fed
//! through a pipe) it sends DTMF as RFC 4733 events, and its log names each digit it receives.
//! Used by `srtp_baresip.rs` and `dtmf_baresip.rs`.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sbc_e2e::process::Owned;

/// A baresip instance's configuration directory, removed on drop (with the process).
pub struct Phone {
    dir: PathBuf,
    proc: Option<Owned>,
    /// The pipe to baresip's `stdio` module, when the phone has a keyboard.
    keys: Option<ChildStdin>,
    keyboard: bool,
}

impl Phone {
    /// Writes the config for a phone listening on `listen` with `account` (an accounts line)
    /// that sends a `freq` Hz tone and records what it receives.
    pub fn new(tag: &str, listen: &str, account: &str, freq: u32) -> Self {
        let dir = std::env::temp_dir().join(sbc_e2e::netns::unique(tag));
        std::fs::create_dir_all(dir.join("rec")).expect("phone dir");
        // ausine produces 48 kHz stereo only; baresip resamples to PCMU's 8 kHz mono.
        let config = format!(
            "poll_method epoll
sip_listen {listen}
audio_player aubridge,play
audio_source ausine,{freq}
audio_alert aubridge,alert
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 2
auplay_channels 2
module_path /usr/lib/baresip/modules
module g711.so
module srtp.so
module ausine.so
module aubridge.so
module sndfile.so
module account.so
module menu.so
snd_path {}
",
            dir.join("rec").display()
        );
        std::fs::write(dir.join("config"), config).expect("config");
        std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("accounts");
        Self {
            dir,
            proc: None,
            keys: None,
            keyboard: false,
        }
    }

    /// Adds `line` to the phone's config (before it runs).
    pub fn configure(&self, line: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("config"))
            .expect("config");
        writeln!(f, "{line}").expect("config line");
    }

    /// Gives the phone a keyboard (before it runs): [`Self::press`] types on it.
    pub fn with_keyboard(mut self) -> Self {
        self.configure("module stdio.so");
        self.keyboard = true;
        self
    }

    /// Runs baresip in namespace `ns` for `secs`, executing `command` once ready.
    pub fn run(&mut self, ns: &str, secs: u32, command: Option<&str>) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "baresip", "-f"])
            .arg(&self.dir)
            .args(["-t", &secs.to_string()]);
        if let Some(c) = command {
            cmd.args(["-e", c]);
        }
        let log = std::fs::File::create(self.dir.join("log")).expect("log");
        let mut child = cmd
            .current_dir(&self.dir)
            .stdin(if self.keyboard {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start baresip (cargo xtask setup installs baresip-core)");
        self.keys = child.stdin.take();
        self.proc = Some(Owned::new("baresip", child));
    }

    /// Types `keys` one at a time, `gap` apart: in a call each digit, `*` and `#` leaves as
    /// an RFC 4733 event (baresip ends it when the next key or the release timer comes).
    pub fn press(&mut self, keys: &str, gap: Duration) {
        let pipe = self.keys.as_mut().expect("a phone with a keyboard");
        for k in keys.chars() {
            write!(pipe, "{k}").expect("key to baresip");
            pipe.flush().expect("key to baresip");
            thread::sleep(gap);
        }
    }

    /// Waits (at most `limit`) until the phone's log shows the call established.
    pub fn wait_established(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains("Call established") {
            assert!(
                Instant::now() < deadline,
                "no call established; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most `limit`) for the process to end.
    pub fn wait(&mut self, limit: Duration) {
        if let Some(p) = &mut self.proc {
            let _ = p.wait_timeout(limit);
        }
    }

    /// What baresip printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The digits the phone received as RFC 4733 events, in order: one per event end
    /// (`received event: '5' (end=1)`).
    pub fn digits_by_rtp(&self) -> String {
        self.log()
            .split("received event: '")
            .skip(1)
            .filter_map(|rest| {
                let mut c = rest.chars();
                let digit = c.next()?;
                c.as_str().starts_with("' (end=1)").then_some(digit)
            })
            .collect()
    }

    /// The digits the phone received as SIP INFO (`call: received DTMF: '5'`), in order.
    pub fn digits_by_info(&self) -> String {
        self.log()
            .split("received DTMF: '")
            .skip(1)
            .filter_map(|rest| rest.chars().next())
            .collect()
    }

    /// The recording of decoded (received) audio.
    pub fn received(&self) -> PathBuf {
        std::fs::read_dir(self.dir.join("rec"))
            .expect("rec dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("no recording; log:\n{}", self.log()))
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        drop(self.keys.take());
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
