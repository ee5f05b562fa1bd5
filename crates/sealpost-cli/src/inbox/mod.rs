//! `sealpost inbox`: the agents' terminal inbox (spec/business.md 8, 9). The state and
//! everything it decides live in [`model`] (pure, unit-tested), the drawing in [`view`];
//! this module is the thin driver: the terminal, the client's events, and the client calls
//! the typed commands make.
//!
//! Conversations listed: `Client::conversations` (those routed, noted or handed off on this
//! device, then the other customers of its history, unassigned), and customers whose
//! messages arrive while the inbox runs.

pub mod model;
mod view;

use crate::commands::{Context, Session, explain, finish, open, wait_connected};
use anyhow::{Context as _, anyhow, bail};
use model::{Inbox, Input, find_device, transcript};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use sealpost_client::{AccountId, ClientError, ClientEvent};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages of the selected conversation read from the history.
const HISTORY_SHOWN: usize = 200;

/// Runs the inbox until `/quit` (or Ctrl-C), then waits (bounded) for the relay to accept
/// what was sent.
pub async fn inbox(ctx: &Context) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!(
            "sealpost inbox needs an interactive terminal (`sealpost desk` does the same from scripts)"
        );
    }
    let mut s = open(ctx).await?;
    let prepared = prepare(ctx, &mut s).await;
    let mut inbox = match prepared {
        Ok(inbox) => inbox,
        Err(e) => {
            finish(s).await?;
            return Err(e);
        }
    };
    // ratatui enters the alternate screen and raw mode, and installs a panic hook that
    // restores the terminal before the panic is reported; every other way out of `run`
    // restores it below.
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            finish(s).await?;
            bail!("cannot take over the terminal: {e}");
        }
    };
    let result = run(&mut s, &mut inbox, &mut terminal).await;
    ratatui::restore();
    let flushed = flush(ctx, &mut s).await;
    finish(s).await?;
    result.and(flushed)
}

/// Connects, checks that this is a business device, reads the list.
async fn prepare(ctx: &Context, s: &mut Session) -> anyhow::Result<Inbox> {
    wait_connected(s, ctx.timeout).await?;
    let mut inbox = Inbox {
        connected: true,
        status: "Ready.".into(),
        ..Inbox::default()
    };
    reload(s, &mut inbox).await.map_err(|e| match e {
        ClientError::NotBusiness => {
            anyhow!("the inbox is for a business account's devices; this one is not")
        }
        e => anyhow!(explain(&e)).context("reading the conversations"),
    })?;
    Ok(inbox)
}

/// Reads the devices, the conversations and the selected one again.
async fn reload(s: &Session, inbox: &mut Inbox) -> Result<(), ClientError> {
    inbox.devices = s.client.own_devices().await?;
    let me = s.client.address().device;
    inbox.me = inbox.devices.iter().find(|d| d.id == me).cloned();
    inbox.desk = s.client.conversations().await?;
    inbox.fix_selection();
    match inbox.selected.clone() {
        Some(customer) => {
            let detail = s.client.conversation(&customer).await?;
            let history = s.client.history(&customer, HISTORY_SHOWN).await?;
            inbox.transcript = transcript(&history, &detail.notes, &inbox.devices, me);
            inbox.detail = Some(detail);
        }
        None => {
            inbox.transcript.clear();
            inbox.detail = None;
        }
    }
    Ok(())
}

/// Key presses, read on a plain thread (crossterm's reads block); it stops when the
/// receiver is dropped.
fn keys() -> anyhow::Result<mpsc::Receiver<Event>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("terminal".into())
        .spawn(move || {
            while !tx.is_closed() {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => match event::read() {
                        Ok(ev) => {
                            if tx.blocking_send(ev).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
        })
        .context("starting the terminal thread")?;
    Ok(rx)
}

async fn run(
    s: &mut Session,
    inbox: &mut Inbox,
    terminal: &mut ratatui::DefaultTerminal,
) -> anyhow::Result<()> {
    let own = s.client.address().account.clone();
    let mut keys = keys()?;
    loop {
        terminal
            .draw(|f| view::draw(f, inbox))
            .context("drawing the inbox")?;
        tokio::select! {
            ev = s.events.recv() => {
                let Some(ev) = ev else { bail!("the client stopped") };
                match ev {
                    ClientEvent::Deregistered => bail!("this device is no longer registered"),
                    ClientEvent::ReplacedByAnotherConnection => bail!(
                        "another copy of this device connected to the relay; stop it before using this one"
                    ),
                    ClientEvent::SendFailed { error, .. } => {
                        inbox.status = format!("✗ a message was not sent: {}", explain(&error));
                    }
                    ev => {
                        if inbox.apply(&ev, &own) {
                            reload_or_report(s, inbox).await;
                        }
                    }
                }
            }
            key = keys.recv() => {
                let Some(key) = key else { bail!("the terminal closed") };
                if !on_key(s, inbox, key).await {
                    return Ok(());
                }
            }
        }
    }
}

async fn reload_or_report(s: &Session, inbox: &mut Inbox) {
    if let Err(e) = reload(s, inbox).await {
        inbox.status = format!("✗ {}", explain(&e));
    }
}

/// Handles a key; `false` to leave.
async fn on_key(s: &Session, inbox: &mut Inbox, ev: Event) -> bool {
    let Event::Key(key) = ev else {
        // A resize: the next draw fits the new size.
        return true;
    };
    if key.kind == KeyEventKind::Release {
        return true;
    }
    let ctrl = key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
    match key.code {
        KeyCode::Char('c' | 'd') if key.modifiers.contains(KeyModifiers::CONTROL) => return false,
        KeyCode::Up | KeyCode::Down => {
            inbox.select(if key.code == KeyCode::Up { -1 } else { 1 });
            reload_or_report(s, inbox).await;
        }
        KeyCode::Esc => inbox.input.clear(),
        KeyCode::Backspace => {
            inbox.input.pop();
        }
        KeyCode::Char(c) if !ctrl => inbox.input.push(c),
        KeyCode::Enter => {
            let line = std::mem::take(&mut inbox.input);
            match model::parse_input(&line) {
                Ok(Input::Quit) => return false,
                Ok(input) => {
                    inbox.status = act(s, inbox, input).await;
                    reload_or_report(s, inbox).await;
                }
                Err(e) => {
                    inbox.status = format!("✗ {e}");
                    inbox.input = line;
                }
            }
        }
        _ => {}
    }
    true
}

/// Does what a typed line asks; returns the status line.
async fn act(s: &Session, inbox: &Inbox, input: Input) -> String {
    if matches!(input, Input::Empty) {
        return inbox.status.clone();
    }
    if matches!(input, Input::Help) {
        return model::HELP.to_owned();
    }
    let Some(customer) = inbox.selected.clone() else {
        return "✗ no conversation selected".into();
    };
    match act_on(s, inbox, &customer, input).await {
        Ok(done) => done,
        Err(e) => format!("✗ {e}"),
    }
}

async fn act_on(
    s: &Session,
    inbox: &Inbox,
    customer: &AccountId,
    input: Input,
) -> anyhow::Result<String> {
    let c = customer.as_str();
    let failed = |e: ClientError| anyhow!(crate::commands::desk::explain_desk(&e));
    Ok(match input {
        Input::Reply(text) => {
            s.client.send_text(customer, &text).await.map_err(failed)?;
            format!("Sent to {c}.")
        }
        Input::Claim => {
            s.client.claim(customer).await.map_err(failed)?;
            format!("You have {c} now.")
        }
        Input::Transfer { to, note } => {
            let device = find_device(&to, &inbox.devices).map_err(|e| anyhow!(e))?;
            s.client
                .transfer(customer, &[device], &note)
                .await
                .map_err(failed)?;
            format!(
                "Handed {c} to {} with the conversation so far.",
                model::device_label(device, &inbox.devices)
            )
        }
        Input::Resolve => {
            s.client.resolve(customer).await.map_err(failed)?;
            format!("Resolved {c}.")
        }
        Input::Note(text) => {
            s.client.add_note(customer, &text).await.map_err(failed)?;
            format!("Internal note on {c} added (the customer never sees it).")
        }
        Input::Empty | Input::Help | Input::Quit => String::new(),
    })
}

/// After the screen is restored: waits (bounded) until the outbox is empty.
async fn flush(ctx: &Context, s: &mut Session) -> anyhow::Result<()> {
    let deadline = Instant::now() + ctx.timeout;
    while s.client.outbox_len().await.unwrap_or(0) > 0 {
        if Instant::now() >= deadline {
            eprintln!(
                "some messages are not accepted by the relay yet: they stay queued and are sent the next time sealpost connects"
            );
            break;
        }
        let until = deadline.min(Instant::now() + Duration::from_millis(50));
        let _ = crate::commands::next_event(&mut s.events, until).await;
    }
    Ok(())
}
