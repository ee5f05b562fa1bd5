//! Business accounts (spec/business.md): `sealpost business profile show|set` (the signed
//! profile and who vouches for it), `verify` (the owner adds a verifier's statement),
//! `trust` (which verifiers this device believes) and `verifier keygen|sign` (for a
//! verifier, outside any registered device).

use super::{Context, explain, finish, open, wait_connected};
use crate::output::{duration_words, now_ms, outln, sanitize};
use crate::settings::{parse_account, parse_key_hex, parse_verifier};
use anyhow::{Context as _, anyhow, bail};
use sealpost_client::{BusinessProfile, BusinessProfileFields, DeviceId, DeviceRole};
use sealpost_crypto::ed25519::SigningKey;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// `sealpost business`.
#[derive(Debug, clap::Subcommand)]
pub enum BusinessCommand {
    /// A business's profile: `show [ACCOUNT]`, or `set` on the owner's device.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// On the owner's device: add a verifier's statement (the hex it printed) to the
    /// published profile; customers who trust the verifier see the business as verified.
    Verify {
        /// The statement, hex.
        statement: String,
    },
    /// On the owner's device: route new conversations to these devices (ids, as `sealpost
    /// devices` lists them; for example the bot and the agents on duty). Customers encrypt
    /// to them and the owner only.
    Route {
        /// The device ids.
        #[arg(required = true)]
        devices: Vec<u32>,
    },
    /// The business's devices (its signed list): role, name, and whether new
    /// conversations go to each (the default route).
    Agents,
    /// Trust a verifier on this device: businesses it vouches for show "verified by NAME".
    Trust {
        /// The name shown for it.
        name: String,
        /// Its Ed25519 public key, 64 hex digits (`sealpost business verifier keygen`
        /// prints it).
        key: String,
    },
    /// For a verifier (an operator or registry), no registered device needed.
    #[command(subcommand)]
    Verifier(VerifierCommand),
}

/// `sealpost business profile`.
#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Show a business's profile, checked against its signed device list and this device's
    /// trusted verifiers; default our own.
    Show {
        /// The business's account.
        account: Option<String>,
    },
    /// On the owner's device: sign and publish the next version of our profile.
    Set(ProfileArgs),
}

/// The fields of `sealpost business profile set`.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// The business's name (shown to customers; a verifier's statement names it).
    #[arg(long)]
    name: String,
    /// Its category ("Bicycle shop").
    #[arg(long, default_value = "")]
    category: String,
    /// A description; `\n` starts a new line.
    #[arg(long, default_value = "")]
    description: String,
    /// Its postal address; `\n` starts a new line.
    #[arg(long, default_value = "")]
    address: String,
    /// Its website, an https:// URL.
    #[arg(long, default_value = "")]
    website: String,
    /// Opening hours as you write them; `\n` starts a new line.
    #[arg(long, default_value = "")]
    hours: String,
    /// How fast you usually reply, in minutes (0: not stated).
    #[arg(long, default_value_t = 0, value_name = "MINUTES")]
    reply_within: u32,
}

/// `sealpost business verifier`.
#[derive(Debug, clap::Subcommand)]
pub enum VerifierCommand {
    /// Make a verifier key: writes its secret to FILE (readable by you only) and prints the
    /// public key that clients trust.
    Keygen {
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a statement that NAME is the business holding ACCOUNT_KEY on ACCOUNT, after
    /// checking it out of band; prints the statement (hex) for the business's owner.
    Sign {
        /// The verifier's secret key file (from `keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The business's account.
        #[arg(long)]
        account: String,
        /// Its account key, 64 hex digits (`sealpost business profile show` prints it).
        #[arg(long, value_name = "HEX")]
        account_key: String,
        /// The business name checked (exactly as in its profile).
        #[arg(long)]
        name: String,
        /// How long the statement holds.
        #[arg(long, default_value_t = 365, value_name = "DAYS")]
        days: u32,
    },
}

/// Runs `sealpost business ...`.
pub async fn business(ctx: &Context, command: BusinessCommand) -> anyhow::Result<()> {
    match command {
        BusinessCommand::Profile(ProfileCommand::Show { account }) => show(ctx, account).await,
        BusinessCommand::Profile(ProfileCommand::Set(args)) => set(ctx, args).await,
        BusinessCommand::Verify { statement } => verify(ctx, &statement).await,
        BusinessCommand::Route { devices } => route(ctx, &devices).await,
        BusinessCommand::Agents => agents(ctx).await,
        BusinessCommand::Trust { name, key } => trust(ctx, &name, &key),
        BusinessCommand::Verifier(VerifierCommand::Keygen { out }) => keygen(&out),
        BusinessCommand::Verifier(VerifierCommand::Sign {
            key,
            account,
            account_key,
            name,
            days,
        }) => sign(&key, &account, &account_key, &name, days),
    }
}

/// `\n` typed on a command line as a line break.
fn lines(text: &str) -> String {
    text.replace("\\n", "\n")
}

async fn show(ctx: &Context, account: Option<String>) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let account = match account {
        Some(a) => parse_account(&a)?,
        None => s.settings.account_id()?,
    };
    wait_connected(&mut s, ctx.timeout).await?;
    let result = s.client.business_profile(&account).await;
    finish(s).await?;
    match result.map_err(|e| anyhow!(explain(&e)).context("fetching the profile"))? {
        None => outln!("{} has no business profile.", account.as_str()),
        Some(p) => print_profile(&p),
    }
    Ok(())
}

fn print_profile(p: &BusinessProfile) {
    let f = &p.fields;
    outln!("{} ({})", sanitize(&f.name), p.account.as_str());
    if p.verified_by.is_empty() {
        outln!("  not verified by any verifier this device trusts");
    }
    for v in &p.verified_by {
        outln!("  verified by {}", sanitize(v));
    }
    for (label, value) in [
        ("category", &f.category),
        ("about", &f.description),
        ("address", &f.address),
        ("website", &f.website),
        ("hours", &f.hours),
    ] {
        if !value.is_empty() {
            outln!("  {label}: {}", sanitize(value));
        }
    }
    if f.reply_within > 0 {
        outln!(
            "  usually replies within {}",
            duration_words(Duration::from_secs(u64::from(f.reply_within)))
        );
    }
    if !p.routed_to.is_empty() {
        let ids: Vec<u32> = p.routed_to.iter().map(|d| d.0).collect();
        outln!("  new conversations go to devices {ids:?} and the owner");
    }
    outln!(
        "  profile version {}, account key {}",
        p.version,
        hex::encode(p.account_key)
    );
}

async fn set(ctx: &Context, args: ProfileArgs) -> anyhow::Result<()> {
    let fields = BusinessProfileFields {
        name: args.name,
        category: args.category,
        description: lines(&args.description),
        address: lines(&args.address),
        website: args.website,
        hours: lines(&args.hours),
        reply_within: args
            .reply_within
            .checked_mul(60)
            .ok_or_else(|| anyhow!("--reply-within is too large"))?,
    };
    fields
        .check()
        .map_err(|e| anyhow!("the profile is not valid: {e}"))?;
    let mut s = open(ctx).await?;
    wait_connected(&mut s, ctx.timeout).await?;
    let result = s.client.publish_business_profile(fields).await;
    finish(s).await?;
    let version = result.map_err(|e| anyhow!(explain(&e)).context("publishing the profile"))?;
    outln!("Published the business profile (version {version}).");
    Ok(())
}

async fn route(ctx: &Context, devices: &[u32]) -> anyhow::Result<()> {
    let ids: Vec<DeviceId> = devices.iter().map(|d| DeviceId(*d)).collect();
    let mut s = open(ctx).await?;
    wait_connected(&mut s, ctx.timeout).await?;
    let result = s.client.set_default_route(&ids).await;
    finish(s).await?;
    let version = result.map_err(|e| anyhow!(explain(&e)).context("publishing the route"))?;
    outln!(
        "New conversations now go to devices {devices:?} and the owner (route version {version})."
    );
    Ok(())
}

async fn agents(ctx: &Context) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    wait_connected(&mut s, ctx.timeout).await?;
    let own = s.settings.account_id()?;
    let listed = s.client.own_devices().await;
    let profile = s.client.business_profile(&own).await;
    let me = s.client.address().device;
    finish(s).await?;
    let listed = listed.map_err(|e| anyhow!(explain(&e)).context("listing the devices"))?;
    let profile = profile.map_err(|e| anyhow!(explain(&e)).context("fetching the profile"))?;
    if !listed.iter().any(|d| {
        matches!(
            d.role,
            DeviceRole::Owner | DeviceRole::Agent | DeviceRole::Bot | DeviceRole::Admin
        )
    }) {
        bail!("{} is not a business account", own.as_str());
    }
    // Without a default route (or a profile to carry it) every device gets new
    // conversations (spec/business.md 7.3).
    let routed: Vec<DeviceId> = profile.map(|p| p.routed_to).unwrap_or_default();
    outln!("Devices of {}:", own.as_str());
    outln!("  {:<10} {:<6} {:<15} name", "", "role", "new chats");
    for d in &listed {
        let new = if d.role == DeviceRole::Owner || routed.is_empty() || routed.contains(&d.id) {
            "yes"
        } else {
            "no"
        };
        let this = if d.id == me { " (this device)" } else { "" };
        outln!(
            "  device {:<3} {:<6} {:<15} {}{this}",
            d.id.0,
            super::role_word(d.role),
            new,
            sanitize(&d.name)
        );
    }
    if routed.is_empty() {
        outln!(
            "No default route: new conversations go to every device (`sealpost business route` sets one)."
        );
    }
    Ok(())
}

async fn verify(ctx: &Context, statement: &str) -> anyhow::Result<()> {
    let bytes = hex::decode(statement.trim()).map_err(|_| anyhow!("the statement is not hex"))?;
    let mut s = open(ctx).await?;
    wait_connected(&mut s, ctx.timeout).await?;
    let result = s.client.add_business_verification(&bytes).await;
    finish(s).await?;
    result.map_err(|e| anyhow!(explain(&e)).context("adding the statement"))?;
    outln!("Added the verification to the business profile.");
    Ok(())
}

fn trust(ctx: &Context, name: &str, key: &str) -> anyhow::Result<()> {
    let mut settings = ctx.dir.load_registered()?;
    let entry = format!("{name}={}", key.trim());
    let (name, key) = parse_verifier(&entry)?;
    settings
        .trusted_verifiers
        .retain(|e| parse_verifier(e).map_or(true, |(_, k)| k != key));
    settings.trusted_verifiers.push(entry);
    ctx.dir.save(&settings)?;
    outln!(
        "Trusting {name} ({}) as a verifier of businesses.",
        hex::encode(key)
    );
    Ok(())
}

fn keygen(out: &PathBuf) -> anyhow::Result<()> {
    if out.exists() {
        bail!("{} exists: not overwriting a key", out.display());
    }
    let key = SigningKey::generate(&mut rand::rng());
    let seed = key.to_seed();
    let text = Zeroizing::new(hex::encode(seed.as_slice()) + "\n");
    write_secret(out, text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    outln!(
        "Verifier key written to {}. Public key (give it to clients): {}",
        out.display(),
        hex::encode(key.verifying_key().to_bytes())
    );
    Ok(())
}

#[cfg(unix)]
fn write_secret(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_secret(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

fn sign(
    key: &PathBuf,
    account: &str,
    account_key: &str,
    name: &str,
    days: u32,
) -> anyhow::Result<()> {
    let text = Zeroizing::new(
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?,
    );
    let seed = Zeroizing::new(
        <[u8; 32]>::try_from(
            hex::decode(text.trim())
                .map_err(|_| anyhow!("{} is not a verifier key", key.display()))?,
        )
        .map_err(|_| anyhow!("{} is not a verifier key", key.display()))?,
    );
    let verifier = SigningKey::from_seed(&seed);
    let account = parse_account(account)?;
    let account_key = sealpost_devices::AccountKey::from_bytes(&parse_key_hex(account_key)?)
        .map_err(|_| anyhow!("the account key is not a valid Ed25519 key"))?;
    let issued = now_ms();
    let expires = issued.saturating_add(u64::from(days.max(1)) * 86_400_000);
    let statement = sealpost_devices::sign_business_verification(
        &verifier,
        &account,
        &account_key,
        name,
        issued,
        expires,
    )
    .and_then(|s| s.encode())
    .map_err(|e| anyhow!("cannot sign: {e}"))?;
    outln!("{}", hex::encode(statement));
    Ok(())
}
