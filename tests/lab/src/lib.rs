//! The lab and its building blocks, with no dependency on the SBC itself (so `cargo xtask`
//! builds before the eBPF toolchain is installed): network namespaces and veths removed on drop,
//! the pbx / sbc / carrier topology, processes ended by their own PID, a tiny HTTP client.
#![forbid(unsafe_code)]

pub mod capture;
pub mod demo;
pub mod http;
pub mod lab;
pub mod netns;
pub mod postgres;
pub mod process;
pub mod sipp;
