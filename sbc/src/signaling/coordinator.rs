//! The shards' coordinator: admin commands fan out to the shards that hold the answer (and the
//! answers are merged), a ban one shard decides reaches the others, shard 0's trunk health
//! reaches the others, and once every shard has drained all are stopped. It is off the
//! per-message path: received messages go from the transports straight to their shard.

use sbc_proto::shard;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use super::{BanList, BanView, Command, Report, StatusView, ToShard};

/// Runs until every shard's task is over.
pub(super) async fn run(
    mut commands: mpsc::Receiver<Command>,
    mut reports: mpsc::UnboundedReceiver<Report>,
    shards: Vec<mpsc::Sender<ToShard>>,
    mut tasks: JoinSet<super::Inbox>,
) {
    let mut drained = vec![false; shards.len()];
    // Channels of shards that are over stay open until all are (see `run_shard`).
    let mut finished = Vec::new();
    loop {
        tokio::select! {
            Some(cmd) = commands.recv() => fan_out(cmd, &shards).await,
            Some(report) = reports.recv() => match report {
                Report::Drained(k) => {
                    if let Some(d) = drained.get_mut(k.index()) {
                        *d = true;
                    }
                    if drained.iter().all(|d| *d) {
                        tracing::info!("drain complete");
                        for s in &shards {
                            let _ = s.send(ToShard::Stop).await;
                        }
                    }
                }
                Report::Banned(from, side, ip) => {
                    for (k, s) in shards.iter().enumerate() {
                        if k != from.index() {
                            let _ = s.send(ToShard::Ban(side, ip)).await;
                        }
                    }
                }
                Report::Binding(user, target) => {
                    for s in shards.iter().skip(1) {
                        let _ = s.send(ToShard::Binding(user.clone(), target)).await;
                    }
                }
                Report::Health(trunk, state) => {
                    for s in shards.iter().skip(1) {
                        let _ = s.send(ToShard::Health(trunk.clone(), state)).await;
                    }
                }
            },
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(inbound)) => finished.push(inbound),
                Some(Err(e)) => {
                    // A shard panicked: its calls are gone; stop the others too, the process
                    // ends (as it did when the one signaling task failed).
                    tracing::error!(error = %e, "signaling shard failed; stopping");
                    for s in &shards {
                        let _ = s.try_send(ToShard::Stop);
                    }
                }
            },
        }
    }
    drop(finished);
}

/// Asks every shard with a command made by `ask` and collects the answers (shards that are
/// over answer nothing).
async fn ask_all<T>(
    shards: &[mpsc::Sender<ToShard>],
    ask: impl Fn(oneshot::Sender<T>) -> Command,
) -> Vec<T> {
    let mut answers = Vec::with_capacity(shards.len());
    for s in shards {
        let (tx, rx) = oneshot::channel();
        if s.send(ToShard::Admin(ask(tx))).await.is_ok()
            && let Ok(a) = rx.await
        {
            answers.push(a);
        }
    }
    answers
}

async fn to_first(shards: &[mpsc::Sender<ToShard>], cmd: Command) {
    if let Some(s) = shards.first() {
        let _ = s.send(ToShard::Admin(cmd)).await;
    }
}

async fn fan_out(cmd: Command, shards: &[mpsc::Sender<ToShard>]) {
    let count = u16::try_from(shards.len()).unwrap_or(shard::MAX_SHARDS);
    match cmd {
        // Shard 0 runs the registrations and health checks; persisted call state (a
        // takeover's restore, the registration lease) exists only with one shard, which the
        // config loader enforces.
        cmd @ (Command::Health(_)
        | Command::Registrations(_)
        | Command::Register(..)
        | Command::Restore(..)
        | Command::SetRegistering(..)) => {
            to_first(shards, cmd).await;
        }
        Command::ClusterBan(side, ip, left) => {
            for s in shards {
                let _ = s
                    .send(ToShard::Admin(Command::ClusterBan(side, ip, left)))
                    .await;
            }
        }
        Command::ClusterUnban(ip) => {
            for s in shards {
                let _ = s.send(ToShard::Admin(Command::ClusterUnban(ip))).await;
            }
        }
        Command::EndCall(id, reply) => {
            // The handle says which shard made it.
            let k = shard::of_call_handle(id, count);
            match shards.get(k.index()) {
                Some(s) => {
                    let _ = s.send(ToShard::Admin(Command::EndCall(id, reply))).await;
                }
                None => {
                    let _ = reply.send(false);
                }
            }
        }
        Command::ListCalls(reply) => {
            let mut all: Vec<_> = ask_all(shards, Command::ListCalls)
                .await
                .into_iter()
                .flatten()
                .collect();
            all.sort_by_key(|c| c.id);
            let _ = reply.send(all);
        }
        Command::ListBans(reply) => {
            let lists = ask_all(shards, Command::ListBans).await;
            let _ = reply.send(merge_bans(lists));
        }
        Command::Unban(ip, reply) => {
            let any = ask_all(shards, |tx| Command::Unban(ip, tx)).await;
            let _ = reply.send(any.contains(&true));
        }
        Command::DnsResolved(r) => {
            for s in shards {
                let _ = s
                    .send(ToShard::Admin(Command::DnsResolved(r.clone())))
                    .await;
            }
        }
        Command::Drain(cfg, reply) => {
            let started = ask_all(shards, |tx| Command::Drain(cfg, tx)).await;
            let _ = reply.send(started.contains(&true));
        }
        Command::EndNow(reply) => {
            let ended = ask_all(shards, Command::EndNow).await;
            let _ = reply.send(ended.contains(&true));
        }
        Command::Status(reply) => {
            let views = ask_all(shards, Command::Status).await;
            if let Some(v) = merge_status(views) {
                let _ = reply.send(v);
            }
        }
        Command::Reconfigure { core, media, done } => {
            let _ = ask_all(shards, |tx| Command::Reconfigure {
                core: core.clone(),
                media: media.clone(),
                done: tx,
            })
            .await;
            let _ = done.send(());
        }
    }
}

/// Every shard holds every ban (mirrored): one entry per source, with the drops of all.
fn merge_bans(lists: Vec<BanList>) -> BanList {
    let enabled = lists.iter().any(|l| l.enabled);
    let mut bans: Vec<BanView> = Vec::new();
    for b in lists.into_iter().flat_map(|l| l.bans) {
        match bans
            .iter_mut()
            .find(|x| x.side == b.side && x.address == b.address)
        {
            Some(x) => {
                x.dropped += b.dropped;
                x.age_s = x.age_s.max(b.age_s);
                x.remaining_s = x.remaining_s.max(b.remaining_s);
            }
            None => bans.push(b),
        }
    }
    // Oldest first, as one shard lists them.
    bans.sort_by_key(|b| std::cmp::Reverse(b.age_s));
    BanList { enabled, bans }
}

/// The SBC's status from its shards': calls summed, the state of the shard least far in its
/// drain (the SBC has drained when all have).
fn merge_status(views: Vec<StatusView>) -> Option<StatusView> {
    const ORDER: [&str; 4] = ["running", "draining", "ending_calls", "drained"];
    let rank = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(0);
    let calls = views.iter().map(|v| v.calls).sum();
    let deadline = views.iter().filter_map(|v| v.drain_deadline_in_s).max();
    let least = views.into_iter().min_by_key(|v| rank(v.state))?;
    Some(StatusView {
        calls,
        drain_deadline_in_s: deadline,
        ..least
    })
}

#[cfg(test)]
mod tests {
    use sbc_proto::shard::ShardId;

    use super::*;

    fn status(state: &'static str, calls: usize) -> StatusView {
        StatusView {
            state,
            draining: state != "running",
            calls,
            drain_deadline_in_s: None,
        }
    }

    #[test]
    fn the_sbc_has_drained_when_every_shard_has() {
        let v = merge_status(vec![status("drained", 0), status("draining", 3)]);
        assert_eq!(v.map(|v| (v.state, v.calls)), Some(("draining", 3)));
        let v = merge_status(vec![status("drained", 0), status("drained", 0)]);
        assert_eq!(v.map(|v| v.state), Some("drained"));
    }

    #[test]
    fn a_mirrored_ban_is_listed_once_with_every_shards_drops() {
        let ban = |dropped, age_s| BanView {
            side: "outside",
            address: "192.0.2.9".parse().expect("address"),
            age_s,
            remaining_s: 10,
            dropped,
        };
        let merged = merge_bans(vec![
            BanList {
                enabled: true,
                bans: vec![ban(5, 3)],
            },
            BanList {
                enabled: true,
                bans: vec![ban(7, 2)],
            },
        ]);
        assert_eq!(merged.bans.len(), 1);
        assert_eq!((merged.bans[0].dropped, merged.bans[0].age_s), (12, 3));
    }

    #[test]
    fn a_call_handle_names_its_shard() {
        let id = (3u64 << shard::CALL_HANDLE_SHIFT) + 17;
        assert_eq!(shard::of_call_handle(id, 4), ShardId::new(3));
        assert_eq!(shard::of_call_handle(17, 4), ShardId::new(0));
    }
}
