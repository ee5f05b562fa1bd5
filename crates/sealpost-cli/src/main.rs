//! `sealpost`: a command-line Sealpost client.
//!
//! ```sh
//! sealpost register --relay relay.example:4433 --relay-pin sha256/3f9a…= --account +15551234567
//! sealpost send +15557654321 "Where is my order #1042?"
//! sealpost receive --wait 10
//! sealpost chat +15557654321
//! sealpost safety-number +15557654321
//! sealpost verify +15557654321 --safety-number "12345 67890 …"
//! sealpost devices
//! sealpost link --relay relay.example:4433 --relay-pin sha256/3f9a…=   # on a new desktop
//! sealpost devices link sealpost-link:AQ…   # on the phone
//! sealpost register --business --name "Shop owner" --account +15551230000   # a business
//! sealpost devices link sealpost-link:AQ… --name "Lina, support" --role agent
//! sealpost devices update 2 --name "Lina, sales" --role admin
//! sealpost pin set
//! sealpost desk list                       # on a business's device
//! sealpost desk transfer +15557654321 --to "Lina, support" --note "refund question"
//! sealpost inbox                           # the agents' terminal inbox
//! ```
//!
//! Everything lives in one data directory (`--data-dir`, `$SEALPOST_HOME`, default
//! `./sealpost`): `config.toml` remembers the relay (one address, or the nodes of a
//! deployment: `--relay` repeated, tried in order), its public-key pins and the account; `store.db` is the client store, encrypted under a passphrase taken from
//! `SEALPOST_PASSPHRASE` or asked for on the terminal (never echoed, never logged).
//!
//! Every command that connects to the relay also receives what is waiting for this device:
//! such messages are printed too (to stdout, in `receive`'s format), so none goes unseen.
#![forbid(unsafe_code)]

mod commands;
mod inbox;
mod output;
mod progress;
mod settings;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A command-line Sealpost client: end-to-end encrypted messages through a Sealpost relay.
#[derive(Debug, Parser)]
#[command(name = "sealpost", version, about, long_about = None)]
struct Cli {
    /// Data directory: configuration and the encrypted store.
    #[arg(long, global = true, env = "SEALPOST_HOME", default_value = "sealpost")]
    data_dir: PathBuf,
    /// How long to wait for the relay (connecting, acceptance of a message), in seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
    /// Log to stderr (-v info, -vv debug, -vvv trace; RUST_LOG overrides the filter).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register this device for an account: requests a verification code, asks for it,
    /// registers and publishes prekeys. Remembers the relay for the other commands.
    Register(commands::RegisterArgs),
    /// Send a text message and wait until the relay has accepted it.
    Send {
        /// The recipient's account (E.164 phone number, e.g. +15551234567).
        account: String,
        /// The message; `-` reads it from stdin.
        message: String,
    },
    /// Interactive chat: incoming messages are printed as they arrive, lines typed are sent;
    /// `/quit` (or end of input) leaves.
    Chat {
        /// The other account.
        account: String,
    },
    /// Print messages received (one per line), then exit.
    Receive {
        /// How long to listen, in seconds.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        wait: u64,
        /// Stop as soon as this many messages were received.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
    /// Show the safety number with a device of an account (60 digits and a QR code) to
    /// compare in person or over another channel.
    SafetyNumber {
        /// The other account.
        account: String,
        /// Its device.
        #[arg(long, default_value_t = 1, value_name = "N")]
        device: u32,
        /// Draw the QR code for a light terminal background (dark modules as blocks).
        #[arg(long)]
        invert: bool,
    },
    /// Mark a device of an account as verified after comparing the safety number: from then
    /// on a new identity of the account holds sending to it until approved.
    Verify {
        /// The other account.
        account: String,
        /// Its device.
        #[arg(long, default_value_t = 1, value_name = "N")]
        device: u32,
        /// The 60 digits the other side sees (spaces allowed); read from stdin if absent.
        #[arg(long, value_name = "DIGITS")]
        safety_number: Option<String>,
    },
    /// Accept the new identity of a verified account without verifying it, and send the
    /// messages held for it.
    Approve {
        /// The account.
        account: String,
    },
    /// Mark the conversation with an account read up to its newest message, here and on
    /// this account's other devices.
    Read {
        /// The other account.
        account: String,
    },
    /// Delete the whole conversation with an account, here and on this account's other
    /// devices (messages still queued to it are still sent).
    Delete {
        /// The other account.
        account: String,
    },
    /// Link this new device to an existing account: shows an invitation (text and QR code)
    /// for the account's primary device, and waits until it links us.
    Link(commands::LinkArgs),
    /// The devices of an account (default: our own: names and roles from its signed list);
    /// `devices link`, `devices update` (name, role) and `devices remove` on the primary
    /// device (a business account's owner).
    Devices(commands::DevicesArgs),
    /// Two-step verification PIN: set, change, disable, check, status.
    #[command(subcommand)]
    Pin(commands::PinCommand),
    /// Business accounts: the signed profile (`profile show|set`), verification (`verify`,
    /// `trust`), and the verifier's tools (`verifier keygen|sign`).
    #[command(subcommand)]
    Business(commands::BusinessCommand),
    /// On a business's device: the customer conversations (`list`, `show`) and the desk's
    /// actions (`claim`, `transfer`, `resolve`, `note`).
    #[command(subcommand)]
    Desk(commands::DeskCommand),
    /// On a business's device: the agents' terminal inbox (conversation list, replies,
    /// claim, transfer, resolve, internal notes), live.
    Inbox,
}

fn init_logs(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let level = match verbose {
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("warn,sealpost={level},sealpost_client={level}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = commands::Context {
        dir: settings::DataDir::new(cli.data_dir),
        timeout: Duration::from_secs(cli.timeout.max(1)),
    };
    match cli.command {
        Command::Register(args) => commands::register(&ctx, args).await,
        Command::Send { account, message } => commands::send(&ctx, &account, &message).await,
        Command::Chat { account } => commands::chat(&ctx, &account).await,
        Command::Receive { wait, count } => {
            commands::receive(&ctx, Duration::from_secs(wait), count).await
        }
        Command::SafetyNumber {
            account,
            device,
            invert,
        } => commands::safety_number(&ctx, &account, device, invert).await,
        Command::Verify {
            account,
            device,
            safety_number,
        } => commands::verify(&ctx, &account, device, safety_number.as_deref()).await,
        Command::Approve { account } => commands::approve(&ctx, &account).await,
        Command::Read { account } => commands::read(&ctx, &account).await,
        Command::Delete { account } => commands::delete(&ctx, &account).await,
        Command::Link(args) => commands::link(&ctx, args).await,
        Command::Devices(args) => commands::devices(&ctx, args).await,
        Command::Pin(command) => commands::pin(&ctx, command).await,
        Command::Business(command) => commands::business(&ctx, command).await,
        Command::Desk(command) => commands::desk(&ctx, command).await,
        Command::Inbox => inbox::inbox(&ctx).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    progress::set_enabled(cli.verbose == 0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for a blocked stdin read or similar leftovers.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the contexts joined by ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
