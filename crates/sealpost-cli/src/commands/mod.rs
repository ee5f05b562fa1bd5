//! The subcommands, and what they share: opening the registered client, reporting events
//! that arrive on the side, waiting for the connection, shutting down.

mod business;
mod chat;
pub mod desk;
mod devices;

mod pin;

pub use business::{BusinessCommand, business};
pub use chat::chat;
pub use desk::{DeskCommand, desk};
pub use devices::{DevicesArgs, LinkArgs, devices, link, role_word};
pub use pin::{PinCommand, pin};

use crate::output::{
    self, identity_fingerprint, message_line, out, outln, qr_code, safety_number_rows,
};
use crate::progress::Step;
use crate::settings::{DataDir, Relays, Settings, parse_account, parse_code, parse_pins};
use anyhow::{Context as _, anyhow, bail};
use sealpost_client::{
    AccountId, AccountKind, Client, ClientError, ClientEvent, DeviceId, ErrorCode, EventReceiver,
};
use std::time::Duration;
use tokio::time::Instant;

/// What every command gets.
pub struct Context {
    /// The data directory.
    pub dir: DataDir,
    /// How long to wait for the relay.
    pub timeout: Duration,
}

/// A running client of the registered device.
pub struct Session {
    /// The client.
    pub client: Client,
    /// Its events.
    pub events: EventReceiver,
    /// The saved settings.
    pub settings: Settings,
}

/// Opens the registered device and starts connecting in the background.
pub async fn open(ctx: &Context) -> anyhow::Result<Session> {
    let settings = ctx.dir.load_registered()?;
    let config = settings.client_config(ctx.timeout).await?;
    let store = ctx.dir.open_store(false).await?;
    let (client, events) = Client::open(store, config).await.map_err(|e| match e {
        ClientError::NotRegistered => anyhow!(
            "{} holds no registered device: run `sealpost register`",
            ctx.dir.path().display()
        ),
        e => anyhow!(e).context("cannot start the client"),
    })?;
    Ok(Session {
        client,
        events,
        settings,
    })
}

/// A user-facing explanation of a relay or client error.
pub fn explain(e: &ClientError) -> String {
    match e.relay_code() {
        Some(ErrorCode::UnknownAccount) => "the account is not registered at this relay".into(),
        Some(ErrorCode::CodeInvalid) => {
            "the code is wrong or expired: check it, or request a new one with `sealpost register`"
                .into()
        }
        Some(ErrorCode::CodeAttemptsExceeded) => {
            "too many wrong codes: request a new one with `sealpost register`".into()
        }
        Some(ErrorCode::RateLimited) => "the relay asks to slow down: try again later".into(),
        Some(ErrorCode::InvalidAccount) => "the relay does not accept this account".into(),
        Some(ErrorCode::RegistrationLocked) => {
            "the account is locked against new registrations".into()
        }
        _ => match e {
            ClientError::WrongPin { attempts_remaining } => format!(
                "wrong PIN; {attempts_remaining} attempts left before the guardians delete the account key"
            ),
            ClientError::VaultUnavailable(why) => format!(
                "the PIN-protected account key cannot be recovered ({why}); wait until the registration lock lapses"
            ),
            ClientError::InvalidPin(why) => format!("not a valid PIN: {why}"),
            ClientError::NoDevices => {
                "the recipient has no device that can receive messages".into()
            }
            ClientError::SendAttemptsExhausted { attempts, last } => {
                format!("gave up after {attempts} attempts ({})", explain(last))
            }
            ClientError::PinMismatch { .. } => format!(
                "{e}: this is not the relay you pinned, or it moved to a key you have not pinned yet; get its pin from the operator (`sealpost-relay --print-pin`) and add it with --relay-pin"
            ),
            ClientError::Connection(_) | ClientError::Endpoint(_) | ClientError::Timeout => {
                format!(
                    "cannot reach the relay ({e}); check --relay and --relay-pin (the relay prints its pin at start)"
                )
            }
            e => e.to_string(),
        },
    }
}

/// Reports an event that is not what the command waits for: messages go to stdout (so
/// that none is missed), warnings to stderr. Fails on `Deregistered`.
pub fn report(event: &ClientEvent) -> anyhow::Result<()> {
    match event {
        ClientEvent::Message {
            from,
            author,
            body,
            timestamp,
            ..
        } => outln!("{}", message_line(from, author.as_ref(), *timestamp, body)),
        ClientEvent::SafetyNumberChanged { account, device } => eprintln!(
            "WARNING: the safety number with {} device {} has changed (new or reinstalled device, or an attack); verify it with `sealpost safety-number {} --device {}`",
            account.as_str(),
            device.0,
            account.as_str(),
            device.0
        ),
        ClientEvent::VerifiedIdentityChanged { account, device } => {
            eprintln!("WARNING: {}", verified_changed_text(account, *device))
        }
        ClientEvent::SendFailed { message_id, error } => eprintln!(
            "warning: an earlier message ({message_id}) could not be sent: {}",
            explain(error)
        ),
        ClientEvent::UnreadableOutboxEntry { error } => eprintln!(
            "warning: a queued message could not be read from the store and was dropped ({error})"
        ),
        ClientEvent::Undecryptable { from, .. } => eprintln!(
            "warning: a message from {} could not be decrypted and was dropped",
            output::sender(from)
        ),
        ClientEvent::StoreRolledBack { .. } => eprintln!(
            "WARNING: this store was restored from an older copy; messages sent or received since that copy are missing here, and conversations restart with new sessions"
        ),
        ClientEvent::SessionReset { peer } => eprintln!(
            "note: {} started a new session (same safety number); messages it sent just before may be missing",
            output::sender(peer)
        ),
        ClientEvent::Deregistered => bail!(
            "this device is no longer registered: it was unlinked, or the account was registered on another device"
        ),
        ClientEvent::ReplacedByAnotherConnection => bail!(
            "another copy of this device connected to the relay; stop it before using this one"
        ),
        ClientEvent::DevicesChanged {
            account,
            added,
            removed,
            changed,
        } => {
            for (what, list) in [
                ("added", added),
                ("removed", removed),
                ("renamed or gave a new role to", changed),
            ] {
                for d in list {
                    eprintln!(
                        "note: {} {what} a device: {} (device {}, {})",
                        account.as_str(),
                        d.name,
                        d.id.0,
                        devices::role_word(d.role)
                    );
                }
            }
        }
        ClientEvent::SwitchedToLinkedDevices { account, .. } => eprintln!(
            "note: {} switched to linked devices (same safety number)",
            account.as_str()
        ),
        ClientEvent::DeviceListRefused { account, reason } => eprintln!(
            "WARNING: the relay served a device list for {} that was refused ({reason}); nothing was encrypted to it",
            account.as_str()
        ),
        ClientEvent::RejectedUnlistedDevice { from, .. } => eprintln!(
            "WARNING: a message claiming to be from {}, a device not on its account's signed device list, was dropped",
            output::sender(from)
        ),
        ClientEvent::HistoryImported {
            contacts,
            messages,
            invalid,
            last,
        } => {
            eprintln!(
                "note: history from this account's primary device: {contacts} contacts and {messages} messages imported{}",
                if *last { " (last part)" } else { "" }
            );
            if *invalid > 0 {
                eprintln!("warning: {invalid} invalid history records were skipped");
            }
        }
        ClientEvent::ReadOnOtherDevice { device, peer, .. } => eprintln!(
            "note: the conversation with {} was read on this account's device {}",
            peer.as_str(),
            device.0
        ),
        ClientEvent::DeletedOnOtherDevice {
            device,
            peer,
            message_ids,
        } => eprintln!(
            "note: {} messages with {} were deleted on this account's device {}, and here",
            message_ids.len(),
            peer.as_str(),
            device.0
        ),
        ClientEvent::ConversationDeletedOnOtherDevice { device, peer } => eprintln!(
            "note: the conversation with {} was deleted on this account's device {}, and here",
            peer.as_str(),
            device.0
        ),
        ClientEvent::RouteChanged {
            business,
            routed_to,
        } => eprintln!("note: {}", route_changed_text(business, routed_to)),
        ClientEvent::ConversationAssigned {
            customer,
            by,
            assigned_to,
            resolved,
        } => eprintln!(
            "note: device {} {} the conversation with {}{}",
            by.0,
            if *resolved { "resolved" } else { "assigned" },
            customer.as_str(),
            if assigned_to.is_empty() {
                String::new()
            } else {
                format!(
                    " (now on devices {:?})",
                    assigned_to.iter().map(|d| d.0).collect::<Vec<_>>()
                )
            }
        ),
        ClientEvent::HandoffReceived {
            customer,
            from,
            messages,
            ..
        } => eprintln!(
            "note: device {} handed the conversation with {} to this device ({messages} messages; `sealpost desk show {}`)",
            from.0,
            customer.as_str(),
            customer.as_str()
        ),
        ClientEvent::HandoffChecked { customer, check } => eprintln!(
            "note: the handoff of {}: {}",
            customer.as_str(),
            crate::inbox::model::check_status(Some(check))
        ),
        ClientEvent::InternalNote { customer, from, .. } => eprintln!(
            "note: device {} added an internal note on {} (`sealpost desk show {}`)",
            from.0,
            customer.as_str(),
            customer.as_str()
        ),
        ClientEvent::Lagged { missed } => eprintln!(
            "warning: {missed} events were not shown (read too slowly); the messages are kept in the store (`sealpost chat ACCOUNT` shows the conversation)"
        ),
        _ => {}
    }
    Ok(())
}

/// `sealpost read ACCOUNT`: marks the conversation read up to its newest message, and sends
/// the sync to this account's other devices before leaving.
pub async fn read(ctx: &Context, account: &str) -> anyhow::Result<()> {
    let account = parse_account(account)?;
    let s = open(ctx).await?;
    let newest = match s.client.history(&account, 1).await {
        Ok(h) => h.into_iter().next_back(),
        Err(e) => {
            finish(s).await?;
            return Err(anyhow!(explain(&e)).context("reading the history"));
        }
    };
    let Some(newest) = newest else {
        finish(s).await?;
        outln!("No messages with {}.", account.as_str());
        return Ok(());
    };
    match s.client.mark_read(&account, newest.message_id).await {
        Ok(true) => outln!("Marked the conversation with {} read.", account.as_str()),
        Ok(false) => outln!(
            "The conversation with {} was read already.",
            account.as_str()
        ),
        Err(e) => {
            finish(s).await?;
            return Err(anyhow!(explain(&e)).context("marking the conversation read"));
        }
    }
    send_queued(ctx, s).await
}

/// `sealpost delete ACCOUNT`: deletes the conversation here, and sends the sync to this
/// account's other devices before leaving.
pub async fn delete(ctx: &Context, account: &str) -> anyhow::Result<()> {
    let account = parse_account(account)?;
    let s = open(ctx).await?;
    if let Err(e) = s.client.delete_conversation(&account).await {
        finish(s).await?;
        return Err(anyhow!(explain(&e)).context("deleting the conversation"));
    }
    outln!("Deleted the conversation with {}.", account.as_str());
    send_queued(ctx, s).await
}

/// Waits (up to the timeout) until the outbox is empty, reporting events, then closes the
/// session. What is left is sent the next time sealpost connects.
async fn send_queued(ctx: &Context, mut s: Session) -> anyhow::Result<()> {
    let deadline = Instant::now() + ctx.timeout;
    let mut result = Ok(());
    while s.client.outbox_len().await.unwrap_or(0) > 0 {
        if Instant::now() >= deadline {
            eprintln!(
                "this account's other devices are not told yet; they will be the next time sealpost connects"
            );
            break;
        }
        // A sync leaves the outbox without an event: look again at least every 50 ms.
        let until = deadline.min(Instant::now() + Duration::from_millis(50));
        match next_event(&mut s.events, until).await {
            Some(ClientEvent::Delivered { .. }) | None => {}
            Some(ev) => {
                if let Err(e) = report(&ev) {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    finish(s).await?;
    result
}

/// What a customer is told when a business moves the conversation to other devices.
pub fn route_changed_text(
    business: &AccountId,
    routed_to: &[sealpost_client::DeviceInfo],
) -> String {
    let who: Vec<String> = routed_to
        .iter()
        .map(|d| format!("{} ({})", output::sanitize(&d.name), role_word(d.role)))
        .collect();
    format!(
        "{} now answers this conversation from {}",
        business.as_str(),
        if who.is_empty() {
            "its devices".to_owned()
        } else {
            who.join(", ")
        }
    )
}

/// What to tell the user when a verified contact's identity changed.
pub fn verified_changed_text(account: &AccountId, device: DeviceId) -> String {
    format!(
        "the identity of {a} device {d}, whose safety number you verified, has CHANGED (a new or reinstalled device, or an attack). Messages to {a} are held until you compare the new safety number (`sealpost safety-number {a} --device {d}`, then `sealpost verify {a} --device {d}`) or accept it with `sealpost approve {a}`",
        a = account.as_str(),
        d = device.0
    )
}

/// The next event, or `None` at `deadline` (or if the client stopped).
pub async fn next_event(events: &mut EventReceiver, deadline: Instant) -> Option<ClientEvent> {
    tokio::time::timeout_at(deadline, events.recv())
        .await
        .ok()
        .flatten()
}

/// Waits until the client is connected, reporting other events.
pub async fn wait_connected(s: &mut Session, timeout: Duration) -> anyhow::Result<()> {
    if s.client.is_connected() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match next_event(&mut s.events, deadline).await {
            Some(ClientEvent::Connected) => return Ok(()),
            Some(ev) => report(&ev)?,
            None => bail!(
                "cannot reach the relay at {} within {} s (check that it runs and that its pin is right; -v shows details)",
                s.settings.relay,
                timeout.as_secs()
            ),
        }
    }
}

/// Shuts the client down cleanly (acknowledging what was received) and reports the events
/// still queued.
pub async fn finish(s: Session) -> anyhow::Result<()> {
    let Session {
        client, mut events, ..
    } = s;
    client.shutdown().await;
    let mut result = Ok(());
    while let Some(ev) = events.try_recv() {
        if let Err(e) = report(&ev) {
            result = Err(e);
        }
    }
    result
}

/// `sealpost register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Relay address, host:port (remembered); repeat for the nodes of a deployment with
    /// several, tried in order (replaces the saved list).
    #[arg(long, value_name = "HOST:PORT")]
    relay: Vec<String>,
    /// The relay's public-key pin, sha256/BASE64 as the relay prints it at start;
    /// repeat to also accept its announced next key (remembered; replaces the saved list).
    #[arg(
        long = "relay-pin",
        alias = "fingerprint",
        value_name = "sha256/BASE64"
    )]
    relay_pins: Vec<String>,
    /// The account to register: an E.164 phone number such as +15551234567.
    #[arg(long, value_name = "PHONE")]
    account: Option<String>,
    /// The code received earlier: registers without requesting a new one. Without it a code
    /// is requested and read from stdin.
    #[arg(long, value_name = "NNNNNN")]
    code: Option<String>,
    /// Only request the code; finish later with `sealpost register --code NNNNNN`.
    #[arg(long, conflicts_with = "code")]
    request_only: bool,
    /// A guardian of the PIN vault, HOST:PORT=PIN or HOST:PORT=PIN,PIN (its public-key pins); repeat in the
    /// same order on every device (remembered). Default: the relay alone.
    #[arg(long = "guardian", value_name = "HOST:PORT=sha256/BASE64")]
    guardians: Vec<String>,
    /// How many guardians recover the PIN vault (remembered; default a majority).
    #[arg(long, value_name = "T")]
    guardian_threshold: Option<u8>,
    /// Register a business account: this device becomes its owner (it holds the account
    /// key); devices linked to it are admins, agents or bots, and customers see each one's
    /// name and role on its messages.
    #[arg(long)]
    business: bool,
    /// This device's name on the account's signed device list, shown to contacts (default
    /// "Primary", or "Owner" with --business).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

async fn read_code_from_stdin(account: &AccountId) -> anyhow::Result<String> {
    eprint!("Enter the 6-digit code sent to {}: ", account.as_str());
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| (n, line))
    })
    .await
    .context("reading the code")?
    .context("reading the code from stdin")?;
    match line {
        (n, line) if n == 0 || line.trim().is_empty() => {
            eprintln!();
            bail!(
                "no code entered; once it arrives, finish with `sealpost register --code NNNNNN` (it is valid for 10 minutes)"
            )
        }
        (_, line) => parse_code(&line),
    }
}

/// Requests a code (unless given), registers, publishes prekeys, remembers the relay.
pub async fn register(ctx: &Context, args: RegisterArgs) -> anyhow::Result<()> {
    let saved = ctx.dir.try_load()?;
    if let Some(s) = saved.as_ref().filter(|s| s.device.is_some())
        && ctx.dir.store_path().exists()
    {
        bail!(
            "{} already holds {} (device {}); use another --data-dir to register another device",
            ctx.dir.path().display(),
            s.account,
            s.device.unwrap_or_default()
        );
    }
    let saved = saved.unwrap_or_default();
    let pick = |flag: Option<String>, saved: &str, name: &str| -> anyhow::Result<String> {
        match flag {
            Some(v) => Ok(v),
            None if !saved.is_empty() => Ok(saved.to_owned()),
            None => bail!("--{name} is required (it is remembered after the first registration)"),
        }
    };
    let relay = match args.relay {
        list if !list.is_empty() => Relays(list),
        _ if !saved.relay.is_empty() => saved.relay.clone(),
        _ => bail!("--relay is required (it is remembered after the first registration)"),
    };
    let mut settings = Settings {
        relay,
        relay_pins: if args.relay_pins.is_empty() {
            saved.relay_pins.clone()
        } else {
            args.relay_pins
        },
        fingerprint: None,
        account: pick(args.account, &saved.account, "account")?,
        device: None,
        guardians: if args.guardians.is_empty() {
            saved.guardians.clone()
        } else {
            args.guardians
        },
        guardian_threshold: args.guardian_threshold.or(saved.guardian_threshold),
        trusted_verifiers: saved.trusted_verifiers.clone(),
    };
    let account = parse_account(&settings.account)?;
    settings.account = account.as_str().to_owned();
    let pins = parse_pins(settings.relay_pins.iter().map(String::as_str))?;
    settings.relay_pins = pins.as_slice().iter().map(ToString::to_string).collect();
    let code = args.code.as_deref().map(parse_code).transpose()?;
    let mut config = settings.client_config(ctx.timeout).await?;
    if args.business {
        config = config.with_account_kind(AccountKind::Business);
    }
    if let Some(name) = args.name {
        devices::check_name(&name)?;
        config = config.with_device_name(name);
    }
    // Remember the relay now, so that `register --code` can finish a started registration.
    ctx.dir.save(&settings)?;

    if code.is_none() {
        let step = Step::start(&format!(
            "Requesting a verification code for {} from {}",
            account.as_str(),
            settings.relay
        ));
        let ttl = Client::request_code(&config, &account)
            .await
            .map_err(|e| anyhow!(explain(&e)))
            .context("requesting a verification code")?;
        step.done(&format!(
            "verification code sent to {} (valid for {} minutes)",
            account.as_str(),
            ttl.div_ceil(60)
        ));
        if args.request_only {
            outln!("Code requested. When it arrives, finish with: sealpost register --code NNNNNN");
            return Ok(());
        }
    }
    let store = ctx.dir.open_store(true).await?;
    let code = match code {
        Some(c) => c,
        None => read_code_from_stdin(&account).await?,
    };

    let mut step = Step::start("Registering this device and publishing prekeys");
    let registered = match Client::register(store.clone(), config.clone(), account.clone(), &code)
        .await
    {
        Err(ClientError::RegistrationLocked(lock)) => {
            step.done("the account has two-step verification on");
            outln!(
                "{} is protected by a PIN. Without it the lock lapses in {} if no device of the account connects meanwhile.",
                account.as_str(),
                output::duration_words(lock.lapses_in)
            );
            let pin = crate::settings::read_pin("Two-step verification PIN: ", false)?;
            step = Step::start(
                "Recovering the account key through the guardians, registering, publishing prekeys",
            );
            Client::register_with_pin(store, config, account.clone(), &code, &pin).await
        }
        other => other,
    };
    let (client, events) = registered.map_err(|e| match e {
        ClientError::AlreadyRegistered => anyhow!(
            "the store in {} already holds a registered device",
            ctx.dir.path().display()
        ),
        e => anyhow!(explain(&e)).context("registration failed"),
    })?;
    let device = client.address().device.0;
    let identity = client.identity();
    step.done(&format!(
        "registered {} as device {device}; prekeys published",
        account.as_str()
    ));
    settings.device = Some(device);
    ctx.dir.save(&settings)?;
    finish(Session {
        client,
        events,
        settings: settings.clone(),
    })
    .await?;
    outln!("Registered {} as device {device}.", account.as_str());
    outln!("Identity fingerprint: {}", identity_fingerprint(&identity));
    outln!(
        "Relay {} (pinned key {}) saved in {}",
        settings.relay,
        settings.relay_pins.join(", "),
        ctx.dir.path().join(crate::settings::CONFIG_FILE).display()
    );
    Ok(())
}

/// Sends one message and waits for the relay's acceptance.
pub async fn send(ctx: &Context, to: &str, message: &str) -> anyhow::Result<()> {
    let to = parse_account(to)?;
    let text = if message == "-" {
        let text = tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
            .await
            .context("reading the message")?
            .context("reading the message from stdin")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        message.to_owned()
    };
    if text.is_empty() {
        bail!("the message is empty");
    }
    let mut s = open(ctx).await?;
    let id = match s.client.send_text(&to, &text).await {
        Ok(id) => id,
        Err(e) => {
            finish(s).await?;
            return Err(anyhow!(explain(&e)).context("cannot queue the message"));
        }
    };
    let deadline = Instant::now() + ctx.timeout;
    let outcome = loop {
        match next_event(&mut s.events, deadline).await {
            Some(ClientEvent::Delivered {
                message_id,
                timestamp,
            }) if message_id == id => break Ok(timestamp),
            Some(ClientEvent::VerifiedIdentityChanged { account, device }) if account == to => {
                break Err(anyhow!(
                    "{}; this message stays queued",
                    verified_changed_text(&account, device)
                ));
            }
            Some(ClientEvent::SendFailed { message_id, error }) if message_id == id => {
                break Err(anyhow!(
                    "the message to {} could not be sent: {}",
                    to.as_str(),
                    explain(&error)
                ));
            }
            Some(ev) => {
                if let Err(e) = report(&ev) {
                    break Err(e);
                }
            }
            None => {
                break Err(anyhow!(
                    "the relay did not accept the message within {} s; it stays queued and is sent the next time sealpost connects",
                    ctx.timeout.as_secs()
                ));
            }
        }
    };
    finish(s).await?;
    let at = outcome?;
    outln!(
        "Sent to {}: accepted by the relay at {}",
        to.as_str(),
        output::date_time(at)
    );
    Ok(())
}

/// Prints the messages received within `wait` (or until `count` of them).
pub async fn receive(ctx: &Context, wait: Duration, count: Option<usize>) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let deadline = Instant::now() + wait;
    let mut received = 0usize;
    let mut connected = s.client.is_connected();
    let mut result = Ok(());
    while count.is_none_or(|n| received < n) {
        match next_event(&mut s.events, deadline).await {
            Some(ClientEvent::Connected) => connected = true,
            Some(ev) => {
                if matches!(ev, ClientEvent::Message { .. }) {
                    received += 1;
                }
                if let Err(e) = report(&ev) {
                    result = Err(e);
                    break;
                }
            }
            None => break,
        }
    }
    let relay = s.settings.relay.clone();
    finish(s).await?;
    result?;
    if !connected && received == 0 {
        bail!(
            "cannot reach the relay at {relay} within {} s (try a longer --wait; -v shows details)",
            wait.as_secs()
        );
    }
    if received == 0 {
        eprintln!("no new messages");
    }
    Ok(())
}

/// Shows the safety number with a device of `account`.
pub async fn safety_number(
    ctx: &Context,
    account: &str,
    device: u32,
    invert: bool,
) -> anyhow::Result<()> {
    let account = parse_account(account)?;
    let s = open(ctx).await?;
    let number = s
        .client
        .safety_number(&account, DeviceId(device))
        .await
        .map_err(|e| match e {
            ClientError::UnknownContact => anyhow!(
                "no session with {} device {device} yet: exchange a message first",
                account.as_str()
            ),
            e => anyhow!(e).context("computing the safety number"),
        });
    let me = s.settings.account.clone();
    finish(s).await?;
    let number = number?;
    outln!(
        "Safety number of {me} and {} (device {device}):",
        account.as_str()
    );
    outln!();
    for row in safety_number_rows(&number) {
        outln!("    {row}");
    }
    outln!();
    outln!(
        "Compare these 60 digits with the ones {} sees, or let them scan this code:",
        account.as_str()
    );
    outln!();
    out!("{}", qr_code(&number.qr_payload(), invert)?);
    Ok(())
}

/// Marks a device of `account` verified if `digits` (or the digits read from stdin) is the
/// current safety number with it.
pub async fn verify(
    ctx: &Context,
    account: &str,
    device: u32,
    digits: Option<&str>,
) -> anyhow::Result<()> {
    let account = parse_account(account)?;
    let digits = match digits {
        Some(d) => d.to_owned(),
        None => {
            eprint!(
                "Type the 60 digits of the safety number that {} sees: ",
                account.as_str()
            );
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .context("reading the safety number")?
            .context("reading the safety number from stdin")?
        }
    };
    let s = open(ctx).await?;
    let result = s
        .client
        .mark_verified(&account, DeviceId(device), &digits)
        .await;
    finish(s).await?;
    match result {
        Ok(()) => {
            outln!(
                "Verified {} device {device}. If its identity changes, messages to {} are held until you approve.",
                account.as_str(),
                account.as_str()
            );
            Ok(())
        }
        Err(ClientError::SafetyNumberMismatch) => bail!(
            "the safety number does not match the one with {} device {device}: NOT verified (compare again with `sealpost safety-number {} --device {device}`)",
            account.as_str(),
            account.as_str()
        ),
        Err(ClientError::UnknownContact) => bail!(
            "no session with {} device {device} yet: exchange a message first",
            account.as_str()
        ),
        Err(e) => Err(anyhow!(explain(&e)).context("verifying")),
    }
}

/// Accepts the changed identity of a verified account and sends what was held for it.
pub async fn approve(ctx: &Context, account: &str) -> anyhow::Result<()> {
    let account = parse_account(account)?;
    let mut s = open(ctx).await?;
    let approved = match s.client.approve_identity(&account).await {
        Ok(n) => n,
        Err(e) => {
            finish(s).await?;
            return Err(anyhow!(explain(&e)).context("approving"));
        }
    };
    if approved == 0 {
        finish(s).await?;
        outln!("Nothing to approve for {}.", account.as_str());
        return Ok(());
    }
    outln!(
        "Approved the new identity of {} (it is not verified: compare the safety number to verify it).",
        account.as_str()
    );
    // Send what was held before leaving.
    let deadline = Instant::now() + ctx.timeout;
    let mut result = Ok(());
    while s.client.outbox_len().await.unwrap_or(0) > 0 {
        match next_event(&mut s.events, deadline).await {
            Some(ClientEvent::Delivered { .. }) => {}
            Some(ev) => {
                if let Err(e) = report(&ev) {
                    result = Err(e);
                    break;
                }
            }
            None => {
                eprintln!(
                    "the held messages are not all accepted yet; they are sent the next time sealpost connects"
                );
                break;
            }
        }
    }
    let left = s.client.outbox_len().await.unwrap_or(0);
    finish(s).await?;
    result?;
    if left == 0 {
        outln!("Held messages sent.");
    }
    Ok(())
}
