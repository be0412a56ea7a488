//! Received messages to their signaling shard: two bounded channels per shard, picked per
//! message by `sbc_proto::shard::route` (a pure function of the message: the shard label in
//! our To tag or branch, else a hash of Call-ID and From tag). No lock, no shared queue: the
//! transport's receive tasks hold the senders and send straight to the owning shard.
//!
//! The two channels of a shard are its lanes (`sbc_proto::shard::Lane`): follow-ups
//! (responses and in-dialog requests: the calls in progress) and new requests. The shard
//! serves follow-ups first, and each lane has its own room, so a flood of new requests (the
//! PBX's own, or anyone's) fills and drops in the new lane while the answers and in-dialog
//! requests of the calls already admitted neither wait behind it nor are dropped for it (RFC
//! 6357 §5: under overload refuse new work first). A CANCEL has no To tag and travels in the
//! new lane, behind its INVITE.

use std::sync::Arc;

use sbc_proto::shard::{self, Lane, ShardId};
use tokio::sync::mpsc::{self, error::SendError, error::TrySendError};

use crate::transport::Inbound;

/// The senders of every shard's inbound lanes; cheap to clone.
#[derive(Debug, Clone)]
pub struct Router {
    shards: Arc<[Lanes<mpsc::Sender<Inbound>>]>,
    /// `shards.len()` as the router counts shards.
    count: u16,
}

/// One shard's two lanes (senders on the transport's side, receivers on the shard's).
#[derive(Debug, Clone)]
pub struct Lanes<T> {
    /// Responses and in-dialog requests: served first.
    pub follow_ups: T,
    /// Requests that start something (a new INVITE, OPTIONS, REGISTER; CANCEL).
    pub new: T,
}

/// What one shard receives from the transports.
pub type Inbox = Lanes<mpsc::Receiver<Inbound>>;

impl<T> Lanes<T> {
    fn lane(&self, lane: Lane) -> &T {
        match lane {
            Lane::FollowUp => &self.follow_ups,
            Lane::New => &self.new,
        }
    }
}

impl Router {
    /// A router over `shards` shards whose lanes hold `capacity` messages each, and the
    /// shards' inboxes (in shard order). `shards` is at least 1 and at most `MAX_SHARDS`.
    pub fn channels(shards: u16, capacity: usize) -> (Self, Vec<Inbox>) {
        let count = shards.clamp(1, shard::MAX_SHARDS);
        let (tx, rx): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| {
                let (follow_ups, follow_rx) = mpsc::channel(capacity);
                let (new, new_rx) = mpsc::channel(capacity);
                (
                    Lanes { follow_ups, new },
                    Lanes {
                        follow_ups: follow_rx,
                        new: new_rx,
                    },
                )
            })
            .unzip();
        (
            Self {
                shards: tx.into(),
                count,
            },
            rx,
        )
    }

    /// How many shards it routes to.
    pub fn count(&self) -> u16 {
        self.count
    }

    fn pick(&self, m: &Inbound) -> &mpsc::Sender<Inbound> {
        let k = shard::route(&m.message, self.count).index();
        // `route` answers below `count`; shard 0 exists whatever happens.
        let lanes = self.shards.get(k).unwrap_or(&self.shards[0]);
        lanes.lane(shard::lane(&m.message))
    }

    /// Hands `m` to its shard at once, or drops it and says why (full: that shard's lane is
    /// busy).
    pub fn try_send(&self, m: Inbound) -> Result<(), TrySendError<()>> {
        self.pick(&m).try_send(m).map_err(|e| match e {
            TrySendError::Full(_) => TrySendError::Full(()),
            TrySendError::Closed(_) => TrySendError::Closed(()),
        })
    }

    /// Hands `m` to its shard, waiting for room (stream transports: back-pressure); an error
    /// if the shard is over.
    pub async fn send(&self, m: Inbound) -> Result<(), SendError<()>> {
        self.pick(&m).send(m).await.map_err(|_| SendError(()))
    }

    /// The shard `m` goes to.
    pub fn shard_of(&self, m: &Inbound) -> ShardId {
        shard::route(&m.message, self.count)
    }
}

impl From<mpsc::Sender<Inbound>> for Router {
    /// One shard, one channel: both lanes go to `tx` in arrival order (tests of the
    /// transports).
    fn from(tx: mpsc::Sender<Inbound>) -> Self {
        Self {
            shards: Arc::from(vec![Lanes {
                follow_ups: tx.clone(),
                new: tx,
            }]),
            count: 1,
        }
    }
}

/// The shard count `[general] signaling_shards` asks for: 0 is one per available core. One
/// while `[state]` is configured (its full rewrite is one core's calls; the loader refuses
/// more than one).
pub fn shard_count(config: &crate::config::Config) -> u16 {
    let configured = config.general.signaling_shards;
    if config.state.is_some() {
        return 1;
    }
    if configured > 0 {
        return configured.min(shard::MAX_SHARDS);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u16::try_from(cores)
        .unwrap_or(shard::MAX_SHARDS)
        .clamp(1, shard::MAX_SHARDS)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sbc_proto::{
        net::{Peer, Side, TransportKind},
        sip::{Limits, Message},
    };

    use super::*;

    fn inbound(text: &str) -> Inbound {
        let local = "10.0.0.1:5060".parse().expect("literal");
        let message = Message::parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default())
            .expect("test message parses");
        Inbound {
            peer: Peer {
                side: Side::Inside,
                transport: TransportKind::Udp,
                addr: "10.0.0.2:5060".parse().expect("literal"),
                conn: None,
                local: Some(local),
            },
            message,
            received: std::time::Instant::now(),
            arrived: std::time::Instant::now(),
        }
    }

    fn invite(n: u32) -> Inbound {
        inbound(&format!(
            "INVITE sip:1@10.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKf{n}\n\
             Max-Forwards: 70\n\
             From: <sip:100@10.0.0.2>;tag=f{n}\n\
             To: <sip:1@10.0.0.1>\n\
             Call-ID: flood-{n}\n\
             CSeq: 1 INVITE\n\
             Content-Length: 0\n\n"
        ))
    }

    fn answer() -> Inbound {
        inbound(
            "SIP/2.0 200 OK\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKs0-0011223344556677\n\
             From: <sip:carrier@10.0.0.1>;tag=s0-aa\n\
             To: <sip:100@10.0.0.2>;tag=pbx\n\
             Call-ID: c1\n\
             CSeq: 1 INVITE\n\
             Content-Length: 0\n\n",
        )
    }

    #[test]
    fn a_full_new_lane_neither_drops_nor_delays_follow_ups() {
        let (router, mut inboxes) = Router::channels(1, 4);
        for n in 0..4 {
            router.try_send(invite(n)).expect("room in the new lane");
        }
        assert!(matches!(
            router.try_send(invite(4)),
            Err(TrySendError::Full(()))
        ));
        // The answer of a call in progress still gets in, and waits in its own lane, not
        // behind the four INVITEs.
        router
            .try_send(answer())
            .expect("room in the follow-up lane");
        let inbox = &mut inboxes[0];
        let first = inbox.follow_ups.try_recv().expect("the answer");
        assert!(!first.message.is_request());
        assert_eq!(inbox.new.len(), 4);
    }

    #[test]
    fn each_message_goes_to_its_shard_and_lane() {
        let (router, mut inboxes) = Router::channels(2, 8);
        router.try_send(answer()).expect("room");
        // The answer's branch names shard 0.
        assert_eq!(inboxes[0].follow_ups.len(), 1);
        for n in 0..8 {
            router.try_send(invite(n)).expect("room");
        }
        let new: usize = inboxes.iter_mut().map(|i| i.new.len()).sum();
        assert_eq!(new, 8);
        assert!(
            inboxes.iter().all(|i| !i.new.is_empty()),
            "spread over both"
        );
    }
}
