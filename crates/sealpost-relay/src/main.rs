//! `sealpost-relay`: runs the Sealpost relay until SIGINT or SIGTERM.
//!
//! ```sh
//! sealpost-relay --config relay.toml          # or flags / SEALPOST_RELAY_* variables
//! RUST_LOG=sealpost_relay=debug sealpost-relay --listen 0.0.0.0:4433
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Context as _;
use sealpost_relay::{Relay, RelayConfig, RelayError};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = match RelayConfig::load(std::env::args_os()) {
        Ok(c) => c,
        Err(RelayError::Usage { text, exit_code }) => {
            if exit_code == 0 {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
            std::process::exit(exit_code);
        }
        Err(e) => return Err(e).context("invalid configuration"),
    };
    // Logs go to stderr; stdout carries only the four start-up lines below.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: RelayConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let relay = Relay::start(config).await.context("starting the relay")?;
    println!("sealpost-relay listening on {}", relay.local_addr());
    println!("data directory: {}", data_dir.display());
    // The fingerprint line stays last: scripts and tests stop reading stdout after it.
    println!(
        "guardian issuer key: {}",
        hex::encode(relay.issuer_public())
    );
    println!(
        "certificate SHA-256 fingerprint: {}",
        hex::encode(relay.cert_fingerprint())
    );
    wait_for_signal().await?;
    relay.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}
