//! `cargo xtask lab up|down|status`: the same topology the tests use (`sbc_lab::lab`), kept
//! after the command exits so people can run things in it (`ip netns exec sbclab-pbx …`).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sbc_lab::lab::Lab;

/// What to do with the lab.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Create the namespaces, veths, addresses and routes.
    Up,
    /// Delete the lab's namespaces.
    Down,
    /// Show which lab namespaces exist.
    Status,
}

/// Runs `action` on the lab named `id`.
pub fn run(action: Action, id: &str) -> Result<()> {
    match action {
        Action::Up => {
            if !Lab::list(&format!("{id}-"))?.is_empty() {
                bail!("lab `{id}` already exists; `cargo xtask lab down --id {id}` first");
            }
            let lab = Lab::up_named(id).context("bringing the lab up (needs root and iproute2)")?;
            println!("lab `{id}` is up:");
            println!(
                "  {}: pbx0 198.18.1.2/24 fd00:5bc:1::2/64 (the PBX)",
                lab.pbx
            );
            println!(
                "  {}: in0 198.18.1.1/24, out0 198.18.2.1/24 (the SBC)",
                lab.sbc
            );
            println!(
                "  {}: car0 198.18.2.2/24 fd00:5bc:2::2/64 (the carrier)",
                lab.carrier
            );
            println!("run things in it with `ip netns exec {} …`", lab.sbc);
            lab.keep();
        }
        Action::Down => {
            let n = Lab::down(id)?;
            println!("lab `{id}`: removed {n} namespace(s)");
        }
        Action::Status => {
            let names = Lab::list(&format!("{id}-"))?;
            if names.is_empty() {
                println!("lab `{id}` is down");
            } else {
                println!("lab `{id}`: {}", names.join(", "));
            }
        }
    }
    Ok(())
}
