//! The media border policy from the configuration (the policy itself is
//! [`sbc_proto::media::policy`]).

pub use sbc_proto::media::policy::{MediaPolicy, TrunkMedia};

use crate::config::Config;

/// The policy of `[pbx]` and `[[trunk]]`.
pub fn from_config(c: &Config) -> MediaPolicy {
    MediaPolicy {
        pbx_networks: c.pbx.media_networks.clone().into(),
        trunks: c
            .trunks
            .iter()
            .map(|t| {
                let media = TrunkMedia {
                    networks: t.media_networks.clone().into(),
                    max_ports: t
                        .max_media_ports
                        .map(|p| usize::try_from(p).unwrap_or(usize::MAX)),
                };
                (t.name.clone(), media)
            })
            .collect(),
    }
}
