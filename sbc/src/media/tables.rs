//! The media tables of the signaling shards (`[general] signaling_shards`): one [`Core`] per
//! shard, each over its share of the relay (`sbc_proto::media::share`). Who owns a relay port
//! or a session is arithmetic, so what arrives from outside a shard (the kernel's latches by
//! port, the AF_XDP relay's news by stream, the admin API by session id) goes to its table
//! without a lookup, and no shard takes another's lock on its per-message path.

use std::{sync::Arc, time::Instant};

use parking_lot::Mutex;
use sbc_proto::media::{
    RelaySettings, SessionId,
    share::{owner_of_port, owner_of_session},
};
use tokio::sync::Notify;

use super::{
    executor::Core,
    relay::{self, Sockets},
};

/// The shards' tables, in shard order.
#[derive(Debug)]
pub(crate) struct Tables {
    cores: Box<[Arc<Mutex<Core>>]>,
    /// Each shard's wake-up for its call layer (events of its table only).
    events: Box<[Arc<Notify>]>,
    /// The whole relay range, which the shares divide.
    whole: RelaySettings,
}

impl Tables {
    /// The tables `cores` (at least one) with their call layers' wake-ups, over `whole`.
    pub fn new(cores: Vec<(Arc<Mutex<Core>>, Arc<Notify>)>, whole: RelaySettings) -> Self {
        let (cores, events): (Vec<_>, Vec<_>) = cores.into_iter().unzip();
        Self {
            cores: cores.into(),
            events: events.into(),
            whole,
        }
    }

    /// Shards in all.
    pub fn count(&self) -> u16 {
        u16::try_from(self.cores.len()).unwrap_or(u16::MAX)
    }

    /// Shard `k`'s table (`k` past the last: the last).
    pub fn core(&self, k: usize) -> &Arc<Mutex<Core>> {
        &self.cores[k.min(self.cores.len() - 1)]
    }

    /// Shard `k`'s call-layer wake-up.
    pub fn events(&self, k: usize) -> &Arc<Notify> {
        &self.events[k.min(self.events.len() - 1)]
    }

    /// Every table, in shard order.
    pub fn all(&self) -> impl Iterator<Item = (usize, &Arc<Mutex<Core>>)> {
        self.cores.iter().enumerate()
    }

    /// The shard whose table minted session `id`.
    pub fn of_session(&self, id: SessionId) -> usize {
        usize::from(owner_of_session(id, self.count()))
    }

    /// The shard that owns relay `port`; `None` outside the range.
    pub fn of_port(&self, port: u16) -> Option<usize> {
        owner_of_port(&self.whole, self.count(), port).map(usize::from)
    }

    /// The whole relay settings.
    pub fn whole(&self) -> &RelaySettings {
        &self.whole
    }
}

/// The AF_XDP relay's control plane: one relay for every shard, whose news goes to each
/// stream's own table.
impl relay::Control for Tables {
    fn learn(&self, news: &mut relay::News, now: Instant) {
        if self.cores.len() == 1 {
            self.cores[0].learn(news, now);
            return;
        }
        let mut parts: Vec<relay::News> =
            self.cores.iter().map(|_| relay::News::default()).collect();
        for (stream, leg, verdict) in news.drain() {
            let k = self.of_session(stream.session);
            parts[k].note(stream, leg, verdict);
        }
        for (k, part) in parts.iter_mut().enumerate() {
            part.deliver(&*self.cores[k], now);
        }
    }

    fn park(&self, sockets: Sockets) {
        let port = sockets[0][0].local_addr().map_or(0, |a| a.port());
        let k = self.of_port(port).unwrap_or(0);
        self.cores[k].park(sockets);
    }
}
