//! Two-step verification with three guardians, 2-of-3, on 127.0.0.1.
//!
//! Run with `cargo run -p sealpost-examples --example pin_guardians` (add `--release` for the
//! production Argon2id parameters, 16 MiB and 32 passes; a debug build uses the small test
//! parameters so that it runs quickly, and says so).
//!
//! A customer turns on a PIN. Their account key (the master secret that yields the
//! registration-lock token and a backup key) is sealed under an oblivious PRF of the PIN
//! whose key is split among three guardians — three relays, here all on 127.0.0.1; in a real
//! deployment run by different operators. Then:
//!
//! 1. the phone is lost: registering the number on a new phone with the SMS code alone is
//!    refused with the registration lock and the date it lapses;
//! 2. with one guardian down, the right PIN recovers the key through the other two;
//! 3. someone who got hold of the SMS code guesses PINs: every guess counts at the guardians,
//!    and after the limit they delete their shares — the key is gone for good, even for the
//!    right PIN. Only the seven-day lapse remains.
// Example code: printing is its purpose, and its test unwraps.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use anyhow::{Context as _, Result, bail};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientError, Guardian, Guardians, PinArgon2Params, Store,
    StoreKey,
};
use sealpost_examples::Phones;
use sealpost_relay::{GuardianConfig, Limits, Relay, RelayConfig, RelayHandle};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CUSTOMER: &str = "+15550100777";
const PIN: &str = "246810";
/// Evaluations each guardian allows between successful recoveries.
const MAX_ATTEMPTS: u16 = 10;

async fn start(dir: &Path, phones: &Arc<Phones>, guardian: GuardianConfig) -> Result<RelayHandle> {
    let mut config = RelayConfig::for_tests(dir).with_guardian(guardian);
    config.listen = "127.0.0.1:0".parse()?;
    config.code_sender = Some(phones.clone());
    config.shutdown_grace_secs = 2;
    // The guessing attacker below asks for many codes; a real relay keeps the default.
    config.limits = Limits {
        code_requests_per_account: 100,
        code_requests_per_connection: 100,
        ..Limits::default()
    };
    Ok(Relay::start(config).await?)
}

fn store() -> Result<Store> {
    Ok(Store::in_memory(StoreKey::generate())?)
}

async fn new_code(config: &ClientConfig, account: &AccountId, phones: &Phones) -> Result<String> {
    Client::request_code(config, account).await?;
    phones.read_code(account.as_str())
}

/// Runs the whole story, writing what happens to `out`.
pub async fn run(out: &mut impl Write) -> Result<()> {
    let phones = Arc::new(Phones::default());
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let guardian = GuardianConfig {
        max_attempts: MAX_ATTEMPTS,
        ..GuardianConfig::default()
    };
    // The home relay issues the credentials the guardians accept; it is a guardian too.
    let home = start(dirs[0].path(), &phones, guardian.clone()).await?;
    let issuer = hex_encode(&home.issuer_public());
    let others = GuardianConfig {
        trusted_issuers: vec![issuer.clone()],
        ..guardian
    };
    let g2 = start(dirs[1].path(), &phones, others.clone()).await?;
    let g3 = start(dirs[2].path(), &phones, others).await?;
    writeln!(
        out,
        "relay + guardian 1 on {}, guardians 2 and 3 on {} and {} (they trust issuer {}…)",
        home.local_addr(),
        g2.local_addr(),
        g3.local_addr(),
        &issuer[..16]
    )?;
    let guardians = Guardians::new(
        [&home, &g2, &g3]
            .iter()
            .map(|r| Guardian::new(r.local_addr(), r.spki_pin()))
            .collect(),
        2,
    )?;
    let params = if cfg!(debug_assertions) {
        writeln!(
            out,
            "(debug build: small Argon2id parameters; use --release for 16 MiB / 32 passes)"
        )?;
        PinArgon2Params::testing()
    } else {
        PinArgon2Params::PRODUCTION
    };
    // A short timeout: an offline guardian costs this long per recovery attempt.
    let config = ClientConfig::new(home.local_addr(), home.spki_pin())
        .with_guardians(guardians)
        .with_pin_params(params)
        .with_request_timeout(Duration::from_secs(3));
    let account = AccountId::new(CUSTOMER)?;

    // The customer's phone: register, set a PIN.
    let code = new_code(&config, &account, &phones).await?;
    let (phone, _events) =
        Client::register(store()?, config.clone(), account.clone(), &code).await?;
    phone.set_pin(PIN).await?;
    let backup_key = phone.backup_key().await?.context("no backup key")?;
    writeln!(
        out,
        "customer {CUSTOMER} set a PIN: registration lock on, account key shared 2-of-3"
    )?;
    phone.shutdown().await;

    // 1. Lost phone: the SMS code alone is not enough.
    let code = new_code(&config, &account, &phones).await?;
    match Client::register(store()?, config.clone(), account.clone(), &code).await {
        Err(ClientError::RegistrationLocked(lock)) => writeln!(
            out,
            "new phone with the SMS code only: refused, registration lock (lapses in {} days unless a device of the account connects)",
            lock.lapses_in.as_secs().div_ceil(86_400)
        )?,
        Ok(_) => bail!("registration without the PIN succeeded"),
        Err(e) => return Err(e.into()),
    }

    // 2. Guardian 3 is down; the right PIN recovers the key through guardians 1 and 2.
    g3.shutdown().await;
    writeln!(out, "guardian 3 goes offline")?;
    let (new_phone, _events) =
        Client::register_with_pin(store()?, config.clone(), account.clone(), &code, PIN).await?;
    let recovered = new_phone.backup_key().await?.context("no backup key")?;
    if *recovered != *backup_key {
        bail!("recovered a different account key");
    }
    writeln!(
        out,
        "new phone with the SMS code and the PIN: registered as device {}; account key recovered through 2 of 3 guardians (backup key matches)",
        new_phone.address().device.0
    )?;
    new_phone.shutdown().await;

    // 3. An attacker with the SMS code (and no device of the customer online) guesses.
    let mut guesses = 0;
    let outcome = loop {
        let code = new_code(&config, &account, &phones).await?;
        let guess = format!("{:06}", 100_000 + guesses);
        guesses += 1;
        match Client::register_with_pin(store()?, config.clone(), account.clone(), &code, &guess)
            .await
        {
            Err(ClientError::WrongPin { attempts_remaining }) => {
                writeln!(
                    out,
                    "attacker guess {guesses}: wrong PIN, {attempts_remaining} attempts left"
                )?;
            }
            Err(ClientError::VaultUnavailable(why)) => break why,
            Ok(_) => bail!("a wrong PIN registered"),
            Err(e) => return Err(e.into()),
        }
        if guesses > u32::from(MAX_ATTEMPTS) + 1 {
            bail!("the guardians never locked out");
        }
    };
    writeln!(
        out,
        "after {guesses} tries the guardians have deleted their shares: {outcome}"
    )?;
    let code = new_code(&config, &account, &phones).await?;
    match Client::register_with_pin(store()?, config.clone(), account.clone(), &code, PIN).await {
        Err(ClientError::VaultUnavailable(_)) => writeln!(
            out,
            "even the right PIN cannot recover the key now: the account key is gone; only the 7-day lapse of the lock remains"
        )?,
        Ok(_) => bail!("the vault survived the attempt limit"),
        Err(e) => return Err(e.into()),
    }
    g2.shutdown().await;
    home.shutdown().await;
    Ok(())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    run(&mut std::io::stdout().lock()).await
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_of_three_recovers_then_locks_out() {
        let mut out = Vec::new();
        super::run(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("refused, registration lock"), "{text}");
        assert!(text.contains("backup key matches"), "{text}");
        assert!(
            text.contains("attacker guess 1: wrong PIN, 9 attempts left"),
            "{text}"
        );
        assert!(text.contains("the account key is gone"), "{text}");
    }
}
