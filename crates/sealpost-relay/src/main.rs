//! `sealpost-relay`: runs the Sealpost relay until SIGINT or SIGTERM.
//!
//! ```sh
//! sealpost-relay --config relay.toml          # or flags / SEALPOST_RELAY_* variables
//! RUST_LOG=sealpost_relay=debug sealpost-relay --listen 0.0.0.0:4433
//! sealpost-relay --print-pin --cert next.pem --key next-key.pem   # a certificate's pin, then exit
//! sealpost-relay --config relay.toml --print-config   # the effective configuration, then exit
//! sealpost-relay backup --to /backups/relay-2026-01-01 --config relay.toml   # while it runs
//! sealpost-relay restore --from /backups/relay-2026-01-01 --config relay.toml   # while it does not
//! ```
//!
//! `--print-pin` prints the public-key pin clients configure (`sha256/<base64>`, spec/relay.md
//! section 1.1) of the certificate the configuration names (or of the data directory's
//! self-signed one, generated if missing) and exits without starting the relay. Operators use
//! it to announce the next key's pin before a rotation.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Context as _;
use sealpost_relay::{Relay, RelayConfig, RelayError};
use tracing_subscriber::EnvFilter;

/// The flag of [`print_pin`]; handled here, before the configuration is read.
const PRINT_PIN_FLAG: &str = "--print-pin";

fn main() -> anyhow::Result<()> {
    let (print_pin, args): (Vec<_>, Vec<_>) =
        std::env::args_os().partition(|a| a.as_os_str() == PRINT_PIN_FLAG);
    // `backup --to DIR` / `restore --from DIR` (sealpost_relay::backup), with the relay's
    // options; handled like `--print-pin`, without starting the relay.
    let (command, args) = match sealpost_relay::backup::Command::split(args) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let config = match RelayConfig::load(args) {
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
    if let Some(command) = command {
        print!("{}", command.run(&config)?);
        return Ok(());
    }
    if !print_pin.is_empty() {
        let pin =
            sealpost_relay::tls::configured_spki_pin(&config).context("reading the certificate")?;
        println!("{pin}");
        return Ok(());
    }
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
    // Installed before anything is printed: a supervisor (or a test) that sends SIGTERM as
    // soon as the start-up lines appear gets a graceful shutdown, not the default action.
    let signals = Signals::install()?;
    let data_dir = config.data_dir.clone();
    let relay = Relay::start(config).await.context("starting the relay")?;
    // Written with errors ignored: a supervisor that closed stdout after reading what it
    // needed must not take the relay down (println! would panic on the broken pipe).
    let lines = [
        format!("sealpost-relay listening on {}", relay.local_addr()),
        format!("data directory: {}", data_dir.display()),
        format!(
            "guardian issuer key: {}",
            hex::encode(relay.issuer_public())
        ),
        format!(
            "certificate SHA-256 fingerprint: {}",
            hex::encode(relay.cert_fingerprint())
        ),
        // The pin line stays last: scripts and tests stop reading stdout after it.
        format!("public-key pin (clients pin this): {}", relay.spki_pin()),
    ];
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    signals.wait().await?;
    relay.shutdown().await;
    Ok(())
}

/// SIGINT and SIGTERM, listened for from [`Signals::install`] on.
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn wait(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        Ok(())
    }
}

/// Ctrl-C, listened for from the first poll of [`Signals::wait`] on.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self)
    }

    async fn wait(self) -> anyhow::Result<()> {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
