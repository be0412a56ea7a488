//! What one signaling shard's media table last added to the gauges and counters every shard
//! shares. Each shard adds the change since its own last report, so the metrics read the sum
//! over the shards and no shard reads another's table (or takes its lock) to set them. With
//! one shard a change added to a gauge that started at zero is the same as setting it.

use std::net::IpAddr;

/// The values a table last reported.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    /// `sbc_media_sessions`.
    pub sessions: i64,
    /// `sbc_media_warm_pairs`.
    pub warm_pairs: i64,
    /// `sbc_media_ports_free` by side.
    pub ports_free: [i64; 2],
    /// `sbc_media_address_ports_free` by relay address.
    pub addresses: Vec<(IpAddr, i64)>,
    /// The warm-pair misses and failures counted.
    pub warm_misses: u64,
    pub warm_failures: u64,
    /// Refusals counted, by reason (`sbc_proto::media::rejections::REASONS` order).
    pub rejections: Vec<u64>,
    /// Their sum: a turn that refused nothing needs no update.
    pub rejections_total: u64,
}

/// Adds `now - last` to `gauge`; `last` becomes `now`.
pub(crate) fn gauge(gauge: &prometheus::IntGauge, last: &mut i64, now: i64) {
    if now != *last {
        gauge.add(now - *last);
        *last = now;
    }
}

/// Adds what a table's own monotonic count grew by since `last` to the shared `counter`.
pub(crate) fn counter(counter: &prometheus::IntCounter, last: &mut u64, now: u64) {
    if now > *last {
        counter.inc_by(now - *last);
        *last = now;
    }
}

/// The slot of `ip` in `addresses`, added at zero when it is new.
pub(crate) fn address(addresses: &mut Vec<(IpAddr, i64)>, ip: IpAddr) -> &mut i64 {
    let i = match addresses.iter().position(|(a, _)| *a == ip) {
        Some(i) => i,
        None => {
            addresses.push((ip, 0));
            addresses.len() - 1
        }
    };
    &mut addresses[i].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_reporters_add_up_on_one_gauge_and_counter() {
        let g = prometheus::IntGauge::new("g", "g").expect("gauge");
        let c = prometheus::IntCounter::new("c", "c").expect("counter");
        let (mut a, mut b) = (Reported::default(), Reported::default());
        gauge(&g, &mut a.sessions, 5);
        gauge(&g, &mut b.sessions, 3);
        assert_eq!(g.get(), 8);
        gauge(&g, &mut a.sessions, 1);
        assert_eq!(g.get(), 4, "one shard's fall leaves the other's share");
        counter(&c, &mut a.warm_misses, 2);
        counter(&c, &mut b.warm_misses, 7);
        counter(&c, &mut a.warm_misses, 2);
        assert_eq!(c.get(), 9);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        *address(&mut a.addresses, ip) = 4;
        assert_eq!(*address(&mut a.addresses, ip), 4);
        assert_eq!(a.addresses.len(), 1);
    }
}
