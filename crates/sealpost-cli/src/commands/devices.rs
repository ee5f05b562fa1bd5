//! Linked devices: `sealpost link` on a new device, and `sealpost devices` (list, `link`,
//! `update`, `remove`) on the account's devices (spec/devices.md section 6).

use super::{Context, Session, explain, finish, open, wait_connected};
use crate::output::{date, identity_fingerprint, out, outln, qr_code};
use crate::progress::Step;
use crate::settings::{Relays, Settings, parse_pins};
use anyhow::{Context as _, anyhow, bail};
use sealpost_client::{
    Client, ClientError, DeviceActivity, DeviceId, DeviceInfo, DeviceRole, LinkFailure,
};

/// `sealpost link`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// Relay address, host:port (the same relay as the account's other devices); repeat
    /// for the nodes of a deployment, tried in order.
    #[arg(long, value_name = "HOST:PORT", required = true)]
    relay: Vec<String>,
    /// The relay's public-key pin, sha256/BASE64; repeat to accept its announced next key.
    #[arg(long = "relay-pin", value_name = "sha256/BASE64", required = true)]
    relay_pins: Vec<String>,
    /// Draw the QR code for a light terminal background (dark modules as blocks).
    #[arg(long)]
    invert: bool,
}

/// `sealpost devices`: without a subcommand, lists devices.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevicesArgs {
    #[command(subcommand)]
    action: Option<DevicesAction>,
    /// The account whose devices to list; default our own.
    account: Option<String>,
}

/// What `sealpost devices` can do besides listing.
#[derive(Debug, clap::Subcommand)]
pub enum DevicesAction {
    /// On the account's primary device: link the new device that shows this invitation
    /// (`sealpost-link:...`, printed by `sealpost link` on the new device).
    Link {
        /// The invitation text.
        invitation: String,
        /// The name the new device gets on the account's device list, shown to contacts.
        #[arg(long, default_value = "Linked device", value_name = "NAME")]
        name: String,
        /// Its role: on a business account admin, agent (default) or bot; on a personal
        /// account linked (default).
        #[arg(long, value_enum, value_name = "ROLE")]
        role: Option<RoleArg>,
    },
    /// On the account's primary device (or owner): change a device's name or role on the
    /// signed device list; contacts see the change, and the new name on its messages.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["name", "role"])))]
    Update {
        /// Its device id (`sealpost devices` lists them).
        device: u32,
        /// The new name.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The new role (business accounts: admin, agent or bot).
        #[arg(long, value_enum, value_name = "ROLE")]
        role: Option<RoleArg>,
    },
    /// On the account's primary device: unlink a device. The relay logs it out at once;
    /// contacts stop encrypting to it when they see the new list.
    Remove {
        /// Its device id (`sealpost devices` lists them).
        device: u32,
    },
}

/// A role a linked device can be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// A personal account's other device.
    Linked,
    /// A business account's administrator.
    Admin,
    /// A business account's human agent.
    Agent,
    /// A business account's automated responder.
    Bot,
}

impl From<RoleArg> for DeviceRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Linked => DeviceRole::Linked,
            RoleArg::Admin => DeviceRole::Admin,
            RoleArg::Agent => DeviceRole::Agent,
            RoleArg::Bot => DeviceRole::Bot,
        }
    }
}

/// A device name as the signed device list takes it (spec/devices.md 3.1): 1 to 64 bytes
/// of UTF-8 without control characters. Checked before anything is sent.
pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        bail!("a device name is 1 to 64 bytes of text without control characters");
    }
    Ok(())
}

/// On a new device: shows an invitation (text and QR code), waits until the account's
/// primary links it, then saves the account like `register` does.
pub async fn link(ctx: &Context, args: LinkArgs) -> anyhow::Result<()> {
    if let Some(s) = ctx.dir.try_load()?.filter(|s| s.device.is_some())
        && ctx.dir.store_path().exists()
    {
        bail!(
            "{} already holds {} (device {}); use another --data-dir to link a new device",
            ctx.dir.path().display(),
            s.account,
            s.device.unwrap_or_default()
        );
    }
    let pins = parse_pins(args.relay_pins.iter().map(String::as_str))?;
    let mut settings = Settings {
        relay: Relays(args.relay),
        relay_pins: pins.as_slice().iter().map(ToString::to_string).collect(),
        ..Settings::default()
    };
    let config = settings.client_config(ctx.timeout).await?;
    let store = ctx.dir.open_store(true).await?;
    let step = Step::start(&format!(
        "Opening a provisioning address at {}",
        settings.relay
    ));
    let pending = Client::link(store, config)
        .await
        .map_err(|e| anyhow!(explain(&e)).context("cannot start linking"))?;
    step.done("ready");
    let invitation = pending.invitation_text();
    outln!("On the account's primary device, run:");
    outln!();
    outln!("  sealpost devices link {invitation}");
    outln!();
    outln!("or scan this code with it:");
    out!("{}", qr_code(invitation.as_bytes(), args.invert)?);
    outln!("Waiting for the primary device (the invitation expires in 10 minutes)...");
    let (client, events) = pending
        .complete()
        .await
        .map_err(|e| anyhow!(explain(&e)).context("linking failed"))?;
    let address = client.address().clone();
    let identity = client.identity();
    settings.account = address.account.as_str().to_owned();
    settings.device = Some(address.device.0);
    ctx.dir.save(&settings)?;
    finish(Session {
        client,
        events,
        settings,
    })
    .await?;
    outln!(
        "Linked to {} as device {}.",
        address.account.as_str(),
        address.device.0
    );
    outln!("Identity fingerprint: {}", identity_fingerprint(&identity));
    Ok(())
}

/// `sealpost devices [ACCOUNT]`, `sealpost devices link`, `sealpost devices update`,
/// `sealpost devices remove`.
pub async fn devices(ctx: &Context, args: DevicesArgs) -> anyhow::Result<()> {
    match args.action {
        Some(DevicesAction::Link {
            invitation,
            name,
            role,
        }) => link_device(ctx, &invitation, &name, role.map(DeviceRole::from)).await,
        Some(DevicesAction::Update { device, name, role }) => {
            update(
                ctx,
                DeviceId(device),
                name.as_deref(),
                role.map(DeviceRole::from),
            )
            .await
        }
        Some(DevicesAction::Remove { device }) => remove(ctx, DeviceId(device)).await,
        None => list(ctx, args.account.as_deref()).await,
    }
}

/// The word for a role, as users see it.
pub fn role_word(role: DeviceRole) -> &'static str {
    match role {
        DeviceRole::Primary => "primary",
        DeviceRole::Linked => "linked",
        DeviceRole::Owner => "owner",
        DeviceRole::Admin => "admin",
        DeviceRole::Agent => "agent",
        DeviceRole::Bot => "bot",
        _ => "other",
    }
}

fn not_key_holder(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::NotKeyHolder => anyhow!(
            "only the account's primary device (the holder of its account key) links, changes and removes devices"
        ),
        ClientError::Link(LinkFailure::RoleNotAllowed { role }) => anyhow!(
            "the role {} is not allowed here: a personal account's devices are linked, a business account's admin, agent or bot, and the primary device (owner) keeps its role",
            role_word(role)
        ),
        ClientError::Link(LinkFailure::UnknownDevice { device }) => anyhow!(
            "device {} is not on the account's device list (`sealpost devices` lists them)",
            device.0
        ),
        e => anyhow!(explain(&e)),
    }
}

async fn link_device(
    ctx: &Context,
    invitation: &str,
    name: &str,
    role: Option<DeviceRole>,
) -> anyhow::Result<()> {
    check_name(name)?;
    let mut s = open(ctx).await?;
    let linked = match wait_connected(&mut s, ctx.timeout).await {
        Ok(()) => match role {
            Some(role) => s.client.link_device_as(invitation.trim(), name, role).await,
            None => s.client.link_device(invitation.trim(), name).await,
        }
        .map_err(not_key_holder)
        .context("linking the device"),
        Err(e) => Err(e),
    };
    finish(s).await?;
    let id = linked?;
    let as_role = role
        .map(|r| format!(" ({})", role_word(r)))
        .unwrap_or_default();
    outln!(
        "Linked \"{name}\"{as_role} as device {}; it finishes joining on its own screen.",
        id.0
    );
    Ok(())
}

async fn update(
    ctx: &Context,
    device: DeviceId,
    name: Option<&str>,
    role: Option<DeviceRole>,
) -> anyhow::Result<()> {
    if let Some(name) = name {
        check_name(name)?;
    }
    let mut s = open(ctx).await?;
    let updated = match wait_connected(&mut s, ctx.timeout).await {
        Ok(()) => s
            .client
            .update_device(device, name, role)
            .await
            .map_err(not_key_holder)
            .context("changing the device"),
        Err(e) => Err(e),
    };
    finish(s).await?;
    let d = updated?;
    outln!(
        "Device {} is now \"{}\" ({}); contacts see the change.",
        d.id.0,
        d.name,
        role_word(d.role)
    );
    Ok(())
}

async fn remove(ctx: &Context, device: DeviceId) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    if s.client.address().device == device {
        finish(s).await?;
        bail!("this is the primary device itself; it cannot unlink itself");
    }
    let removed = match wait_connected(&mut s, ctx.timeout).await {
        Ok(()) => s
            .client
            .remove_device(device)
            .await
            .map_err(not_key_holder)
            .context("removing the device"),
        Err(e) => Err(e),
    };
    finish(s).await?;
    removed?;
    outln!(
        "Device {} removed: it is logged out, and contacts stop encrypting to it.",
        device.0
    );
    Ok(())
}

/// The "last seen" column: this device, the UTC day the relay last saw the device
/// (spec/relay.md 3.12 gives only the day), `never` when the relay has no record, `unknown`
/// when the relay did not say.
fn last_seen(me: DeviceId, id: DeviceId, activity: Option<&[DeviceActivity]>) -> String {
    if id == me {
        return "(this device)".to_owned();
    }
    match activity.and_then(|a| a.iter().find(|d| d.id == id)) {
        Some(DeviceActivity {
            last_seen_day: Some(day),
            ..
        }) => date(*day),
        Some(_) => "never".to_owned(),
        None => "unknown".to_owned(),
    }
}

fn print_own(me: DeviceId, listed: &[DeviceInfo], activity: Option<&[DeviceActivity]>) {
    outln!("  {:<10} {:<8} {:<13} name", "", "role", "last seen");
    for d in listed {
        outln!(
            "  device {:<3} {:<8} {:<13} {}",
            d.id.0,
            role_word(d.role),
            last_seen(me, d.id, activity),
            d.name
        );
    }
}

async fn list(ctx: &Context, account: Option<&str>) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let own = s.settings.account_id()?;
    let account = match account {
        Some(a) => crate::settings::parse_account(a)?,
        None => own.clone(),
    };
    let connected = wait_connected(&mut s, ctx.timeout).await;
    let me = s.client.address().clone();
    let result = match connected {
        Err(e) => Err(e),
        Ok(()) if account == own => match s.client.own_devices().await {
            Ok(listed) => {
                // Last seen is an extra: a relay without `DeviceActivity` still lists.
                let activity = s
                    .client
                    .device_activity()
                    .await
                    .inspect_err(|e| eprintln!("warning: last seen unavailable: {}", explain(e)))
                    .ok();
                Ok(Listing::Own(listed, activity))
            }
            Err(e) => Err(anyhow!(explain(&e)).context("listing devices")),
        },
        Ok(()) => s
            .client
            .devices(&account)
            .await
            .map(Listing::Other)
            .map_err(|e| anyhow!(explain(&e)).context("listing devices")),
    };
    finish(s).await?;
    match result? {
        Listing::Own(listed, activity) if !listed.is_empty() => {
            outln!("Devices of {} (signed device list):", account.as_str());
            print_own(me.device, &listed, activity.as_deref());
        }
        Listing::Own(..) => outln!(
            "{} has no signed device list yet (it is published at the next start).",
            account.as_str()
        ),
        Listing::Other(listed) if listed.is_empty() => {
            outln!("{} has no registered device.", account.as_str());
        }
        Listing::Other(listed) => {
            outln!("Devices of {}:", account.as_str());
            for d in listed {
                let note = match d.known {
                    Some(true) => "identity as known from our session",
                    Some(false) => {
                        "IDENTITY CHANGED since our last session: verify the safety number"
                    }
                    None => "no session yet",
                };
                outln!(
                    "  device {:<3} identity {}  ({note})",
                    d.address.device.0,
                    identity_fingerprint(&d.identity)
                );
            }
        }
    }
    Ok(())
}

enum Listing {
    /// The signed list, and last-seen days if the relay gave them.
    Own(Vec<DeviceInfo>, Option<Vec<DeviceActivity>>),
    Other(Vec<sealpost_client::Device>),
}
