//! `sealpost pin`: two-step verification (spec/pin.md section 11).

use super::{Context, explain, finish, open, wait_connected};
use crate::output::outln;
use crate::progress::Step;
use crate::settings::read_pin;
use anyhow::{anyhow, bail};
use sealpost_client::PinCheck;

/// What `sealpost pin` does.
#[derive(Debug, clap::Subcommand)]
pub enum PinCommand {
    /// Set a PIN (at least 6 digits; longer alphanumeric PINs are stronger): turns the
    /// registration lock on and stores the account key with the guardians.
    Set,
    /// Change the PIN (the account key and the lock stay).
    Change,
    /// Turn two-step verification off: the lock is removed and the guardians delete the key.
    Disable,
    /// Check that you still remember the PIN (locally; nothing is sent).
    Check,
    /// Show whether a PIN is set and whether a reminder is due.
    Status,
}

/// Runs a `sealpost pin` subcommand.
pub async fn pin(ctx: &Context, command: PinCommand) -> anyhow::Result<()> {
    let mut s = open(ctx).await?;
    let result = run(ctx, &mut s, command).await;
    let finished = finish(s).await;
    result.and(finished)
}

async fn run(ctx: &Context, s: &mut super::Session, command: PinCommand) -> anyhow::Result<()> {
    match command {
        PinCommand::Set | PinCommand::Change => {
            let status = s.client.pin_status().await?;
            if matches!(command, PinCommand::Set) && status.enabled {
                bail!("a PIN is already set: use `sealpost pin change`");
            }
            if matches!(command, PinCommand::Change) && !status.enabled {
                bail!("no PIN is set: use `sealpost pin set`");
            }
            let pin = read_pin("New PIN: ", true)?;
            wait_connected(s, ctx.timeout).await?;
            let step = Step::start("Storing the account key with the guardians");
            s.client
                .set_pin(&pin)
                .await
                .map_err(|e| anyhow!(explain(&e)))?;
            step.done("PIN set; registration lock on");
            outln!(
                "Two-step verification is on. Registering {} on a new phone now needs this PIN.",
                s.settings.account
            );
        }
        PinCommand::Disable => {
            wait_connected(s, ctx.timeout).await?;
            let step = Step::start("Removing the registration lock and the stored key");
            s.client
                .disable_pin()
                .await
                .map_err(|e| anyhow!(explain(&e)))?;
            step.done("two-step verification off");
            outln!("Two-step verification is off.");
        }
        PinCommand::Check => {
            let pin = read_pin("Your PIN: ", false)?;
            match s
                .client
                .check_pin(&pin)
                .await
                .map_err(|e| anyhow!(explain(&e)))?
            {
                PinCheck::Correct => outln!("Correct. The next reminder comes later."),
                PinCheck::Wrong => bail!("that is not your PIN"),
                PinCheck::RateLimited { retry_in } => bail!(
                    "too many wrong answers: try again in {}",
                    crate::output::duration_words(retry_in)
                ),
            }
        }
        PinCommand::Status => {
            let status = s.client.pin_status().await?;
            if status.enabled {
                outln!("Two-step verification: on");
                if status.reminder_due {
                    outln!("A PIN reminder is due: run `sealpost pin check`.");
                }
            } else {
                outln!("Two-step verification: off");
            }
        }
    }
    Ok(())
}
