//! `sealpost chat`: a line-based interactive chat.

use super::{Context, Session, explain, finish, next_event, open};
use crate::output::{self, body_text, clock, now_ms, outln, sanitize, sender};
use crate::settings::parse_account;
use anyhow::{Context as _, bail};
use sealpost_client::{AccountId, ClientEvent, Direction, MessageId};
use std::collections::HashMap;
use std::io::IsTerminal as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Earlier messages shown when a chat opens.
const HISTORY_SHOWN: usize = 10;
/// Characters of a sent message repeated in its delivery line.
const PREVIEW_CHARS: usize = 40;

const HELP: &str = "Type a message and press Enter to send it. Commands: /quit (or end of input) leaves, /help shows this.";

/// Lines of stdin, read on a plain thread (a blocked read must not hold up the runtime's
/// shutdown). The channel closes at end of input.
fn stdin_lines() -> anyhow::Result<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        })
        .context("starting the input thread")?;
    Ok(rx)
}

fn preview(text: &str) -> String {
    let mut p: String = sanitize(text).chars().take(PREVIEW_CHARS).collect();
    if text.chars().count() > PREVIEW_CHARS {
        p.push('…');
    }
    p
}

struct Screen {
    peer: AccountId,
    color: bool,
}

impl Screen {
    fn banner(&self, lines: &[String]) {
        let rule = "!".repeat(72);
        let (on, off) = if self.color {
            ("\x1b[1;31m", "\x1b[0m")
        } else {
            ("", "")
        };
        outln!("{on}{rule}");
        for l in lines {
            outln!("!! {l}");
        }
        outln!("{rule}{off}");
    }

    /// Shows an event; `pending` maps our unconfirmed messages to their text.
    fn show(
        &self,
        event: &ClientEvent,
        pending: &mut HashMap<MessageId, String>,
    ) -> anyhow::Result<()> {
        match event {
            ClientEvent::Message {
                from,
                author,
                body,
                timestamp,
                ..
            } => {
                let elsewhere = if from.account == self.peer {
                    ""
                } else {
                    " (not in this chat)"
                };
                outln!(
                    "[{}] {}{elsewhere}: {}",
                    clock(*timestamp),
                    output::author(from, author.as_ref()),
                    body_text(body)
                );
            }
            ClientEvent::Delivered {
                message_id,
                timestamp,
            } => {
                if let Some(text) = pending.remove(message_id) {
                    outln!("[{}] ✓ delivered: {}", clock(*timestamp), preview(&text));
                }
            }
            ClientEvent::SendFailed { message_id, error } => {
                let text = pending.remove(message_id).unwrap_or_default();
                outln!(
                    "[{}] ✗ NOT SENT: {} ({})",
                    clock(now_ms()),
                    preview(&text),
                    explain(error)
                );
            }
            ClientEvent::SafetyNumberChanged { account, device } => self.banner(&[
                format!(
                    "SAFETY NUMBER CHANGED: {} device {} has a new identity.",
                    account.as_str(),
                    device.0
                ),
                "A new or reinstalled device, or someone intercepting your messages.".into(),
                format!(
                    "Verify it before you trust this chat: sealpost safety-number {} --device {}",
                    account.as_str(),
                    device.0
                ),
            ]),
            ClientEvent::VerifiedIdentityChanged { account, device } => self.banner(&[
                format!(
                    "VERIFIED IDENTITY CHANGED: {} device {} has a new identity.",
                    account.as_str(),
                    device.0
                ),
                crate::commands::verified_changed_text(account, *device),
            ]),
            ClientEvent::UnreadableOutboxEntry { error } => outln!(
                "[{}] ! a queued message could not be read from the store and was dropped ({error})",
                clock(now_ms())
            ),
            ClientEvent::Undecryptable { from, .. } => outln!(
                "[{}] ! a message from {} could not be decrypted and was dropped",
                clock(now_ms()),
                sender(from)
            ),
            ClientEvent::StoreRolledBack { .. } => self.banner(&[
                "THIS STORE WAS RESTORED FROM AN OLDER COPY.".into(),
                "Messages sent or received since that copy are missing here;".into(),
                "conversations restart with new sessions.".into(),
            ]),
            ClientEvent::SessionReset { peer } => outln!(
                "[{}] ! {} started a new session (same safety number); messages it sent just before may be missing",
                clock(now_ms()),
                sender(peer)
            ),
            ClientEvent::ReadOnOtherDevice { device, peer, .. } if *peer == self.peer => {
                outln!("[{}] (read on your device {})", clock(now_ms()), device.0)
            }
            ClientEvent::DeletedOnOtherDevice {
                device,
                peer,
                message_ids,
            } if *peer == self.peer => outln!(
                "[{}] ! {} messages of this chat were deleted on your device {}",
                clock(now_ms()),
                message_ids.len(),
                device.0
            ),
            ClientEvent::ConversationDeletedOnOtherDevice { device, peer }
                if *peer == self.peer =>
            {
                outln!(
                    "[{}] ! this chat was deleted on your device {}",
                    clock(now_ms()),
                    device.0
                )
            }
            ClientEvent::RouteChanged {
                business,
                routed_to,
            } => outln!(
                "[{}] — {} —",
                clock(now_ms()),
                crate::commands::route_changed_text(business, routed_to)
            ),
            ClientEvent::Connected => outln!("— connected to the relay —"),
            ClientEvent::Disconnected => outln!("— connection lost; reconnecting —"),
            ClientEvent::Deregistered => bail!(
                "this device is no longer registered: the account was registered on another device"
            ),
            ClientEvent::ReplacedByAnotherConnection => bail!(
                "another copy of this device connected to the relay; stop it before using this one"
            ),
            _ => {}
        }
        Ok(())
    }
}

async fn show_history(s: &Session, screen: &Screen) -> anyhow::Result<()> {
    let history = s
        .client
        .history(&screen.peer, HISTORY_SHOWN)
        .await
        .context("reading the history")?;
    if history.is_empty() {
        return Ok(());
    }
    outln!("— earlier messages —");
    for h in &history {
        let who = match h.direction {
            Direction::Incoming => output::author(&h.peer, h.author.as_ref()),
            Direction::Outgoing => "me".into(),
        };
        outln!("[{}] {who}: {}", clock(h.timestamp), body_text(&h.body));
    }
    outln!("—");
    Ok(())
}

/// Runs the chat until `/quit`, end of input or Ctrl-C, then waits (bounded) for the
/// relay to accept what was typed.
pub async fn chat(ctx: &Context, peer: &str) -> anyhow::Result<()> {
    let peer = parse_account(peer)?;
    let mut s = open(ctx).await?;
    let screen = Screen {
        peer: peer.clone(),
        color: std::io::stdout().is_terminal(),
    };
    outln!(
        "Chat of {} with {}. {HELP}",
        s.settings.account,
        peer.as_str()
    );
    let result = run(&mut s, &screen).await;
    let wait = match &result {
        Ok(pending) if !pending.is_empty() => Some(pending.clone()),
        _ => None,
    };
    if let Some(mut pending) = wait {
        eprintln!(
            "waiting for {} message(s) to reach the relay…",
            pending.len()
        );
        let deadline = Instant::now() + ctx.timeout;
        while !pending.is_empty() {
            match next_event(&mut s.events, deadline).await {
                Some(ev) => screen.show(&ev, &mut pending)?,
                None => break,
            }
        }
        if !pending.is_empty() {
            eprintln!(
                "{} message(s) not yet accepted by the relay: they stay queued and are sent the next time sealpost connects",
                pending.len()
            );
        }
    }
    finish(s).await?;
    result.map(|_| ())
}

/// The chat loop; returns our messages the relay has not accepted yet.
async fn run(s: &mut Session, screen: &Screen) -> anyhow::Result<HashMap<MessageId, String>> {
    show_history(s, screen).await?;
    let mut lines = stdin_lines()?;
    let mut pending: HashMap<MessageId, String> = HashMap::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            ev = s.events.recv() => match ev {
                Some(ev) => screen.show(&ev, &mut pending)?,
                None => bail!("the client stopped"),
            },
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim_end_matches('\r');
                match line.trim() {
                    "" => continue,
                    "/quit" | "/exit" => break,
                    "/help" => {
                        outln!("{HELP}");
                        continue;
                    }
                    cmd if cmd.starts_with('/') && !cmd.starts_with("//") => {
                        outln!("unknown command {cmd:?} (start a message with // to send a leading /). {HELP}");
                        continue;
                    }
                    _ => {}
                }
                let text = line.strip_prefix('/').filter(|t| t.starts_with('/')).unwrap_or(line);
                match s.client.send_text(&screen.peer, text).await {
                    Ok(id) => {
                        pending.insert(id, text.to_owned());
                    }
                    Err(e) => outln!("✗ not sent: {}", explain(&e)),
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    Ok(pending)
}
