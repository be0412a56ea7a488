//! `[inside]` / `[outside]` `media_addresses`: the relay addresses of a side. One address
//! gives a side ~30,000 streams (a port pair each in 1024-65535); several multiply that, each
//! with the whole `[media]` port range. An entry is an address (SDP names it as it is) or,
//! behind 1:1 NAT, `{ address = "...", advertised = "..." }`.

use std::{fmt, net::IpAddr};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, MapAccess, Visitor},
};

/// Most relay addresses per side: the XDP program checks every relay address's port range on
/// a packet that matches no mapping ([`sbc_ebpf_common::MAX_RELAY_RANGES`] for both sides).
pub const MAX_MEDIA_ADDRESSES: usize = 8;

/// One relay address of a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MediaAddress {
    /// Address the relay ports are bound to.
    pub address: IpAddr,
    /// Address SDP names for it, when it differs (1:1 NAT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised: Option<IpAddr>,
}

/// The inline-table form, with unknown keys refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapped {
    address: IpAddr,
    #[serde(default)]
    advertised: Option<IpAddr>,
}

impl<'de> Deserialize<'de> for MediaAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than `untagged`: its errors say what is wrong with
        // the entry ("invalid IP address syntax", "unknown field") instead of "no variant".
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MediaAddress;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an IP address or { address = "...", advertised = "..." }"#)
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<MediaAddress, E> {
                let address = s.parse().map_err(E::custom)?;
                Ok(MediaAddress {
                    address,
                    advertised: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MediaAddress, A::Error> {
                let m = Mapped::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MediaAddress {
                    address: m.address,
                    advertised: m.advertised,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A side's relay addresses resolved: (bind, advertised) in configuration order.
/// `media_address = X` is shorthand for `media_addresses = [X]`, and the side's
/// `advertised_address` (SIP's) also names the first relay address unless that entry gives
/// its own; every other entry is advertised as itself unless it says otherwise.
pub fn resolve(side: &super::Side) -> Vec<(IpAddr, IpAddr)> {
    let list: Vec<MediaAddress> = match side.media_address {
        Some(address) => vec![MediaAddress {
            address,
            advertised: None,
        }],
        None => side.media_addresses.clone(),
    };
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let fallback = if i == 0 {
                side.advertised_address
            } else {
                None
            };
            (a.address, a.advertised.or(fallback).unwrap_or(a.address))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        list: Vec<MediaAddress>,
    }

    #[test]
    fn plain_and_mapped_entries_parse() {
        let w: Wrap = toml::from_str(
            r#"list = ["10.0.0.1", { address = "10.0.0.2", advertised = "203.0.113.2" },
                       { address = "fd00::3" }]"#,
        )
        .expect("valid");
        let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
        assert_eq!(
            w.list,
            [
                MediaAddress {
                    address: ip("10.0.0.1"),
                    advertised: None
                },
                MediaAddress {
                    address: ip("10.0.0.2"),
                    advertised: Some(ip("203.0.113.2"))
                },
                MediaAddress {
                    address: ip("fd00::3"),
                    advertised: None
                },
            ]
        );
    }

    #[test]
    fn bad_entries_say_why() {
        for (text, want) in [
            (r#"list = ["10.0.0.300"]"#, "invalid IP address"),
            (
                r#"list = [{ address = "10.0.0.1", nat = "x" }]"#,
                "unknown field `nat`",
            ),
            (
                r#"list = [{ advertised = "10.0.0.1" }]"#,
                "missing field `address`",
            ),
            ("list = [7]", "an IP address or"),
        ] {
            let e = toml::from_str::<Wrap>(text).err().expect(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
