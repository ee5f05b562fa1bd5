//! `sealpost desk`: a business device's customer conversations (spec/business.md 8, 9):
//! `list`, `claim`, `transfer`, `resolve`, `note`, `show`. The words are the inbox's
//! ([`crate::inbox::model`]).

use super::{
    Context, Session, explain, finish, next_event, open, report, send_queued, wait_connected,
};
use crate::inbox::model::{
    Group, assignment, device_label, device_labels, event_customer, find_device, handoff_status,
    rows, transcript,
};
use crate::output::{outln, sanitize};
use crate::settings::parse_account;
use anyhow::{anyhow, bail};
use sealpost_client::{AccountId, ClientError, DeviceId, DeviceInfo};
use sealpost_devices::RouteError;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// Messages `desk show` prints by default.
const SHOWN: usize = 50;

/// `sealpost desk`.
#[derive(Debug, clap::Subcommand)]
pub enum DeskCommand {
    /// The customer conversations this device knows: unassigned, mine, others', resolved,
    /// with the devices they are assigned to and the last handoff's check.
    List {
        /// Listen this long first for what the relay has waiting (new customers,
        /// assignments, handoffs, checks).
        #[arg(long, default_value_t = 2, value_name = "SECONDS")]
        wait: u64,
    },
    /// Take a conversation: the customer's messages come to this device (and the owner)
    /// from now on.
    Claim {
        /// The customer's account.
        customer: String,
    },
    /// Hand a conversation to other devices of the business with the conversation so far;
    /// they check it against the customer's own record.
    Transfer {
        /// The customer's account.
        customer: String,
        /// The devices, by id or name (`sealpost business agents` lists them).
        #[arg(long, required = true, num_args = 1.., value_name = "DEVICE")]
        to: Vec<String>,
        /// A note for them (never sent to the customer).
        #[arg(long, default_value = "", value_name = "TEXT")]
        note: String,
    },
    /// Resolve a conversation: it goes back to the devices that answer new conversations,
    /// with its history.
    Resolve {
        /// The customer's account.
        customer: String,
    },
    /// An internal note on a conversation, for the business's devices on it and the owner;
    /// never sent to the customer.
    Note {
        /// The customer's account.
        customer: String,
        /// The note.
        text: String,
    },
    /// A conversation: who has it, the handoff and its check, the messages with who wrote
    /// each, and the internal notes.
    Show {
        /// The customer's account.
        customer: String,
        /// How many of the newest messages to show.
        #[arg(long, default_value_t = SHOWN, value_name = "N")]
        limit: usize,
        /// Listen this long first for what the relay has waiting.
        #[arg(long, default_value_t = 2, value_name = "SECONDS")]
        wait: u64,
    },
}

/// A user-facing explanation of a desk error.
pub fn explain_desk(e: &ClientError) -> String {
    match e {
        ClientError::NotBusiness => "this device is not a business account's device".into(),
        ClientError::RouteRefused(RouteError::Unauthorized) => {
            "this device may not route this conversation: only the owner, an admin, or a device the conversation is routed to can".into()
        }
        ClientError::UnknownDevice(d) => format!(
            "device {} is not on the business's device list (`sealpost business agents`)",
            d.0
        ),
        ClientError::NoteRefused => "a note is 1 to 4096 bytes (a transfer's may be empty)".into(),
        ClientError::HandoffTooLarge => {
            "the conversation is too long to hand off in one message".into()
        }
        e => explain(e),
    }
}

/// Runs `sealpost desk ...`.
pub async fn desk(ctx: &Context, command: DeskCommand) -> anyhow::Result<()> {
    match command {
        DeskCommand::List { wait } => list(ctx, Duration::from_secs(wait)).await,
        DeskCommand::Show {
            customer,
            limit,
            wait,
        } => {
            show(
                ctx,
                &parse_account(&customer)?,
                limit,
                Duration::from_secs(wait),
            )
            .await
        }
        DeskCommand::Claim { customer } => {
            act(ctx, &parse_account(&customer)?, Action::Claim).await
        }
        DeskCommand::Transfer { customer, to, note } => {
            act(ctx, &parse_account(&customer)?, Action::Transfer(to, note)).await
        }
        DeskCommand::Resolve { customer } => {
            act(ctx, &parse_account(&customer)?, Action::Resolve).await
        }
        DeskCommand::Note { customer, text } => {
            act(ctx, &parse_account(&customer)?, Action::Note(text)).await
        }
    }
}

enum Action {
    Claim,
    Transfer(Vec<String>, String),
    Resolve,
    Note(String),
}

/// Connects (so that the list and the default route are fresh), does it, and waits until
/// the relay has accepted what it queued.
async fn act(ctx: &Context, customer: &AccountId, action: Action) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let done = match wait_connected(&mut s, ctx.timeout).await {
        Ok(()) => run_action(&s, customer, action).await,
        Err(e) => Err(e),
    };
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            finish(s).await?;
            return Err(e);
        }
    };
    send_queued(ctx, s).await?;
    outln!("{done}");
    Ok(())
}

async fn run_action(s: &Session, customer: &AccountId, action: Action) -> anyhow::Result<String> {
    let c = customer.as_str();
    let failed = |e: ClientError| anyhow!(explain_desk(&e));
    let devices = s.client.own_devices().await.map_err(failed)?;
    Ok(match action {
        Action::Claim => {
            let v = s.client.claim(customer).await.map_err(failed)?;
            format!("Claimed the conversation with {c} (route version {v}).")
        }
        Action::Transfer(to, note) => {
            let ids = to
                .iter()
                .map(|t| find_device(t, &devices))
                .collect::<Result<Vec<DeviceId>, String>>()
                .map_err(|e| anyhow!(e))?;
            let v = s
                .client
                .transfer(customer, &ids, &note)
                .await
                .map_err(failed)?;
            format!(
                "Transferred the conversation with {c} to {} with the conversation so far (route version {v}).",
                device_labels(&ids, &devices)
            )
        }
        Action::Resolve => {
            let v = s.client.resolve(customer).await.map_err(failed)?;
            format!("Resolved the conversation with {c} (route version {v}).")
        }
        Action::Note(text) => {
            s.client.add_note(customer, &text).await.map_err(failed)?;
            format!(
                "Internal note on {c} sent to the business's devices on it (never to the customer)."
            )
        }
    })
}

/// Listens for `wait` to what the relay has waiting (reported as usual) and returns the
/// customers it was about. The relay does not say when nothing more is waiting, so this is
/// a time, as for `sealpost receive --wait`.
async fn listen(s: &mut Session, wait: Duration) -> anyhow::Result<BTreeSet<AccountId>> {
    let own = s.client.address().account.clone();
    let deadline = Instant::now() + wait;
    let mut seen = BTreeSet::new();
    loop {
        let ev = match s.events.try_recv() {
            Some(ev) => ev,
            None => match next_event(&mut s.events, deadline).await {
                Some(ev) => ev,
                None => return Ok(seen),
            },
        };
        if let Some(c) = event_customer(&ev, &own) {
            seen.insert(c);
        }
        report(&ev)?;
    }
}

async fn list(ctx: &Context, wait: Duration) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let connected = wait_connected(&mut s, ctx.timeout).await;
    let result = match connected {
        Ok(()) => match listen(&mut s, wait).await {
            Ok(seen) => listing(&s).await.map(|l| (l, seen)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    finish(s).await?;
    let ((desk, devices, me), seen) = result?;
    let rows = rows(&desk, &seen);
    outln!("Conversations on {}:", device_label(me, &devices));
    for group in Group::ALL {
        let members: Vec<_> = rows.iter().filter(|r| r.group == group).collect();
        outln!("{} ({}):", group.title(), members.len());
        for r in members {
            let mut line = format!("  {}", r.customer.as_str());
            if matches!(group, Group::Mine | Group::Others) {
                line.push_str(&format!("  → {}", device_labels(&r.assigned_to, &devices)));
            }
            if let Some(check) = &r.check {
                line.push_str(&format!("  [handoff: {check}]"));
            }
            outln!("{line}");
        }
    }
    Ok(())
}

type Listing = (
    Vec<sealpost_client::DeskConversation>,
    Vec<DeviceInfo>,
    DeviceId,
);

async fn listing(s: &Session) -> anyhow::Result<Listing> {
    let failed = |e: ClientError| anyhow!(explain_desk(&e)).context("listing the conversations");
    let devices = s.client.own_devices().await.map_err(failed)?;
    let desk = s.client.conversations().await.map_err(failed)?;
    Ok((desk, devices, s.client.address().device))
}

async fn show(
    ctx: &Context,
    customer: &AccountId,
    limit: usize,
    wait: Duration,
) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let result = match wait_connected(&mut s, ctx.timeout).await {
        Ok(()) => match listen(&mut s, wait).await {
            Ok(_) => read_conversation(&s, customer, limit).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let me = s.client.address().device;
    finish(s).await?;
    let (conversation, history, devices) = result?;
    if history.is_empty() && conversation.handoff.is_none() && conversation.notes.is_empty() {
        bail!("no conversation with {} on this device", customer.as_str());
    }
    outln!(
        "Conversation with {} ({})",
        customer.as_str(),
        assignment(&conversation, &devices)
    );
    if let Some(h) = &conversation.handoff {
        outln!(
            "Handoff from {} ({} messages): {}",
            device_label(h.from, &devices),
            h.messages,
            handoff_status(h)
        );
        if !h.note.is_empty() {
            outln!("Handoff note: {}", sanitize(&h.note));
        }
    }
    for line in transcript(&history, &conversation.notes, &devices, me) {
        outln!("{}", line.line());
    }
    Ok(())
}

type Conversation = (
    sealpost_client::DeskConversation,
    Vec<sealpost_client::HistoryEntry>,
    Vec<DeviceInfo>,
);

async fn read_conversation(
    s: &Session,
    customer: &AccountId,
    limit: usize,
) -> anyhow::Result<Conversation> {
    let failed = |e: ClientError| anyhow!(explain_desk(&e)).context("reading the conversation");
    let devices = s.client.own_devices().await.map_err(failed)?;
    let conversation = s.client.conversation(customer).await.map_err(failed)?;
    let history = s.client.history(customer, limit).await.map_err(failed)?;
    Ok((conversation, history, devices))
}
