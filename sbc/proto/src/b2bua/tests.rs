//! Call flows through the B2BUA with simulated time, one behaviour per file: the scripted
//! harness (`sim.rs`, the test plays PBX and carrier) and a two-sided lossy network with
//! endpoint agents (`net.rs`, seeded drops, duplicates and reordering). Both run the real media
//! table ([`SimMedia`]).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::{media::SimMedia, net::TransportKind, transaction::TimerConfig};

mod agents;
mod net;
mod sim;

use sim::*;

mod admission;
mod auth;
mod auth_passthrough;
mod border;
mod cancel;
mod caps;
mod codec_filter;
mod codec_refusal;
mod drain;
mod dtmf;
mod dtmf_early;
mod dtmf_restore;
mod extensions;
mod failover;
mod failover_srtp;
mod fork;
mod inbound_call;
mod load;
mod lossy_link;
mod media_peers;
mod message;
mod outbound_call;
mod payload_mapping;
mod pbx_auth;
mod peer_binding;
mod record;
mod redirect;
mod refusals;
mod register_relay;
mod reinvite;
mod rejected_call;
mod relay_ports;
mod reliable_provisional;
mod restore;
mod retransmission;
mod routing;
mod session_timer;
mod shared_limits;
mod srtp;
mod t38;
mod teardown;
mod tokens;
