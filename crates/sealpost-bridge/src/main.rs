//! `sealpost-bridge`: runs one device of a business account and serves its conversations to
//! the business's own systems over a local HTTP API (crate README.md).
//!
//! ```sh
//! export SEALPOST_PASSPHRASE=...        # the store's passphrase (or --passphrase-file)
//! sealpost-bridge link --store /var/lib/sealpost-bridge \
//!     --relay relay.example:4433 --relay-pin sha256/3f9a…= --name "Order bot" --role bot
//! # prints an invitation; on the business's owner device:
//! #   sealpost devices link sealpost-link:AQ… --name "Order bot" --role bot
//! sealpost-bridge run --store /var/lib/sealpost-bridge            # API on 127.0.0.1:8787
//! sealpost-bridge run --store /var/lib/sealpost-bridge --webhook http://127.0.0.1:9000/sealpost
//! ```
//!
//! Every setting is a flag with an environment variable (`SEALPOST_BRIDGE_*`); what
//! `link` learns (relay, pins, account, device) is kept in `bridge.toml` in the store
//! directory, next to the encrypted store `store.db`.
#![forbid(unsafe_code)]

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sealpost_bridge::{Bridge, BridgeConfig, DEFAULT_LISTEN, WebhookConfig};
use sealpost_client::{Client, ClientConfig, RelayAddr, SpkiPins, Store, StoreSecret};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The bridge's settings file in the store directory.
const SETTINGS_FILE: &str = "bridge.toml";
/// The encrypted client store in the store directory.
const STORE_FILE: &str = "store.db";
/// Environment variable holding the store passphrase.
const PASSPHRASE_ENV: &str = "SEALPOST_PASSPHRASE";

/// Runs one device of a Sealpost business account and serves its conversations to the
/// business's own systems over a local, authenticated HTTP API.
#[derive(Debug, Parser)]
#[command(name = "sealpost-bridge", version, about, long_about = None)]
struct Cli {
    /// Store directory: the encrypted store, `bridge.toml`, the API token, the webhook
    /// secret and cursor.
    #[arg(
        long,
        global = true,
        env = "SEALPOST_BRIDGE_STORE",
        default_value = "sealpost-bridge"
    )]
    store: PathBuf,
    /// A file holding the store passphrase (instead of $SEALPOST_PASSPHRASE).
    #[arg(long, global = true, env = "SEALPOST_BRIDGE_PASSPHRASE_FILE")]
    passphrase_file: Option<PathBuf>,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
    #[arg(
        long,
        global = true,
        env = "SEALPOST_BRIDGE_LOG",
        default_value = "info"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    Bot,
    Agent,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this store a new device of a business account: prints an invitation for the
    /// account's owner device (`sealpost devices link <invitation> --name NAME --role
    /// ROLE`) and waits until it links us (10 minutes at most).
    Link {
        /// The relay, HOST:PORT (repeat for the nodes of one deployment).
        #[arg(
            long,
            required = true,
            env = "SEALPOST_BRIDGE_RELAY",
            value_delimiter = ','
        )]
        relay: Vec<String>,
        /// The relay's public-key pin, sha256/<base64> (repeat for the next key).
        #[arg(
            long = "relay-pin",
            required = true,
            env = "SEALPOST_BRIDGE_RELAY_PIN",
            value_delimiter = ','
        )]
        relay_pins: Vec<String>,
        /// The display name the owner should give this device (customers see it).
        #[arg(long, default_value = "Bridge")]
        name: String,
        /// The role the owner should give this device.
        #[arg(long, value_enum, default_value = "bot")]
        role: Role,
    },
    /// Serve the API (until SIGINT or SIGTERM).
    Run {
        /// Listen address (loopback by default).
        #[arg(long, env = "SEALPOST_BRIDGE_LISTEN", default_value_t = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Allow a listen address that is not loopback (other machines can then reach
        /// the API: put TLS and a firewall in front).
        #[arg(long, env = "SEALPOST_BRIDGE_ALLOW_REMOTE")]
        allow_remote: bool,
        /// Read the API token from this file instead of the generated `bridge-token` in
        /// the store directory.
        #[arg(long, env = "SEALPOST_BRIDGE_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Deliver every event to this URL (POST, signed; see README.md).
        #[arg(long, env = "SEALPOST_BRIDGE_WEBHOOK")]
        webhook: Option<String>,
    },
}

/// What `link` learns, kept in `bridge.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    relay: Vec<String>,
    relay_pins: Vec<String>,
    account: String,
    device: u32,
}

fn passphrase(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
        let text = text.trim_end_matches(['\n', '\r']).to_owned();
        if text.is_empty() {
            bail!("the passphrase file {} is empty", path.display());
        }
        return Ok(text);
    }
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => bail!("set {PASSPHRASE_ENV} (or --passphrase-file) to the store's passphrase"),
    }
}

async fn open_store(dir: &Path, passphrase: String, create: bool) -> anyhow::Result<Store> {
    let path = dir.join(STORE_FILE);
    if !create && !path.exists() {
        bail!(
            "no store in {}: run `sealpost-bridge link` first",
            dir.display()
        );
    }
    if create {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Store::open_sqlite(&path, StoreSecret::passphrase(passphrase))
        .await
        .map_err(|e| anyhow!("cannot open the store {}: {e}", path.display()))
}

async fn client_config(relays: &[String], pins: &[String]) -> anyhow::Result<ClientConfig> {
    let pins = SpkiPins::parse(pins.iter().map(String::as_str))
        .map_err(|e| anyhow!("invalid relay pin: {e}"))?;
    let addrs = relays
        .iter()
        .map(|r| {
            r.parse::<RelayAddr>()
                .with_context(|| format!("invalid relay address {r:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = relays.first().ok_or_else(|| anyhow!("no relay address"))?;
    let addr = tokio::net::lookup_host(first.as_str())
        .await
        .with_context(|| format!("cannot resolve the relay address {first:?}"))?
        .next()
        .ok_or_else(|| anyhow!("the relay address {first:?} resolves to nothing"))?;
    Ok(ClientConfig::new(addr, pins).with_relays(addrs))
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Bot => "bot",
        Role::Agent => "agent",
    }
}

async fn link(
    cli: &Cli,
    relay: &[String],
    relay_pins: &[String],
    name: &str,
    role: Role,
) -> anyhow::Result<()> {
    let settings_path = cli.store.join(SETTINGS_FILE);
    if settings_path.exists() {
        bail!(
            "{} already holds a linked device; use another --store",
            cli.store.display()
        );
    }
    let config = client_config(relay, relay_pins).await?;
    let store = open_store(
        &cli.store,
        passphrase(cli.passphrase_file.as_deref())?,
        true,
    )
    .await?;
    let pending = Client::link(store, config)
        .await
        .map_err(|e| anyhow!("cannot start linking: {e}"))?;
    let invitation = pending.invitation_text();
    eprintln!("On the business account's owner device, run:\n");
    eprintln!(
        "  sealpost devices link {invitation} --name {name:?} --role {}\n",
        role_word(role)
    );
    eprintln!("Waiting to be linked (the invitation expires in 10 minutes)...");
    let (client, _events) = pending
        .complete()
        .await
        .map_err(|e| anyhow!("linking failed: {e}"))?;
    let address = client.address().clone();
    let settings = Settings {
        relay: relay.to_vec(),
        relay_pins: relay_pins.to_vec(),
        account: address.account.as_str().to_owned(),
        device: address.device.0,
    };
    let text = toml::to_string(&settings).context("encoding the settings")?;
    sealpost_bridge::files::write_atomic(&settings_path, text.as_bytes())?;
    client.shutdown().await;
    eprintln!(
        "Linked to {} as device {}. Start it with `sealpost-bridge run --store {}`.",
        address.account.as_str(),
        address.device.0,
        cli.store.display()
    );
    Ok(())
}

async fn run(
    cli: &Cli,
    listen: SocketAddr,
    allow_remote: bool,
    token_file: Option<PathBuf>,
    webhook: Option<String>,
) -> anyhow::Result<()> {
    let settings_path = cli.store.join(SETTINGS_FILE);
    let text = std::fs::read_to_string(&settings_path).with_context(|| {
        format!(
            "cannot read {}: run `sealpost-bridge link` first",
            settings_path.display()
        )
    })?;
    let settings: Settings = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", settings_path.display(), e.message()))?;
    let mut bridge_config = BridgeConfig::new(cli.store.clone()).with_listen(listen);
    bridge_config.allow_remote = allow_remote;
    bridge_config.token_file = token_file;
    if let Some(url) = webhook {
        bridge_config = bridge_config.with_webhook(WebhookConfig::new(url));
    }
    // Before unlocking the store: a refused setting costs nothing.
    bridge_config.check()?;
    let config = client_config(&settings.relay, &settings.relay_pins).await?;
    let store = open_store(
        &cli.store,
        passphrase(cli.passphrase_file.as_deref())?,
        false,
    )
    .await?;
    let (client, events) = Client::open(store, config)
        .await
        .map_err(|e| anyhow!("cannot open the device: {e}"))?;
    let bridge = match Bridge::start(client.clone(), events, bridge_config).await {
        Ok(b) => b,
        Err(e) => {
            client.shutdown().await;
            return Err(e.into());
        }
    };
    eprintln!(
        "sealpost-bridge: device {} of {} serving on http://{} (token in {})",
        settings.device,
        settings.account,
        bridge.local_addr(),
        cli.store.join(sealpost_bridge::files::TOKEN_FILE).display()
    );
    wait_for_signal().await;
    bridge.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sealpost-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Link {
                relay,
                relay_pins,
                name,
                role,
            } => link(&cli, relay, relay_pins, name, *role).await,
            Command::Run {
                listen,
                allow_remote,
                token_file,
                webhook,
            } => {
                run(
                    &cli,
                    *listen,
                    *allow_remote,
                    token_file.clone(),
                    webhook.clone(),
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealpost-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
