//! The PIN part of the client's API (spec/pin.md): setting, changing and disabling the
//! PIN, reminders, and the backup key.

use super::*;

impl Client {
    /// Sets the two-step verification PIN, or changes it (spec/pin.md section 11): enrols a
    /// vault holding the master secret at every configured guardian, turns the
    /// registration lock on at the relay, and stores the master secret and a local
    /// verifier for reminders. Changing keeps the master secret (and the lock's token). On
    /// the device that holds the account key, also stores the account-key backup at the
    /// relay (spec/devices.md 2.1). Needs a connection (waits up to the request timeout for one); all guardians must be
    /// reachable.
    pub async fn set_pin(&self, pin: &str) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let pin = crate::pin::normalized(pin)?;
        let conn = shared.wait_connection().await?;
        let store = shared.engine.store.clone();
        let master = blocking(move || Ok(store.pin()?.map(|p| p.master)))
            .await?
            .unwrap_or_else(|| MasterSecret::generate(&mut rand::rng()));
        enrol_pin(&shared, &conn, &pin, master).await?;
        // The key holder leaves its account key, sealed under the PIN, with the relay
        // (spec/devices.md 2.1), so that a recovery with the PIN keeps the account key.
        devices::back_up_account_key(&shared, &conn).await
    }

    /// Turns two-step verification off: clears the registration lock, deletes the vault at
    /// every guardian and forgets the master secret and the local verifier.
    pub async fn disable_pin(&self) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let conn = shared.wait_connection().await?;
        crate::pin::disable(&conn, &shared.config).await?;
        let store = shared.engine.store.clone();
        blocking(move || {
            let mut batch = Batch::new();
            store.delete_pin(&mut batch);
            Ok(store.commit(batch)?)
        })
        .await?;
        tracing::info!("PIN disabled; registration lock off");
        Ok(())
    }

    /// Whether a PIN is set and whether a reminder is due.
    pub async fn pin_status(&self) -> Result<PinStatus, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        blocking(move || {
            Ok(match store.pin()? {
                None => PinStatus {
                    enabled: false,
                    reminder_due: false,
                },
                Some(p) => PinStatus {
                    enabled: true,
                    reminder_due: ReminderState::decode(&p.reminder)
                        .map_err(ClientError::Pin)?
                        .reminder_due(now_ms() / 1000),
                },
            })
        })
        .await
    }

    /// Checks `pin` against the local verifier for a "do you still remember your PIN"
    /// reminder. Local only (no guardian attempt is used); rate-limited after repeated
    /// wrong answers, and the limit survives restarts (spec/pin.md section 11).
    pub async fn check_pin(&self, pin: &str) -> Result<PinCheck, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        let pin = pin.to_owned();
        blocking(move || {
            let mut record = store.pin()?.ok_or(ClientError::PinNotSet)?;
            let now = now_ms() / 1000;
            let mut state = ReminderState::decode(&record.reminder).map_err(ClientError::Pin)?;
            if !state.can_check(now) {
                return Ok(PinCheck::RateLimited {
                    retry_in: Duration::from_secs(state.locked_until().saturating_sub(now)),
                });
            }
            let ok = match sealpost_pin::normalize::normalize(&pin) {
                Ok(p) => LocalVerifier::from_bytes(&record.verifier)
                    .and_then(|v| v.verify(&p))
                    .map_err(ClientError::Pin)?,
                Err(_) => false,
            };
            state.record_result(ok, now);
            record.reminder = state.encode().to_vec();
            let mut batch = Batch::new();
            store.put_pin(&mut batch, &record);
            store.commit(batch)?;
            Ok(if ok {
                PinCheck::Correct
            } else {
                PinCheck::Wrong
            })
        })
        .await
    }

    /// The key for encrypted backups derived from the master secret (spec/pin.md section
    /// 6.1), if a PIN is set. It is recovered with the PIN on a new device.
    pub async fn backup_key(
        &self,
    ) -> Result<Option<sealpost_crypto::Zeroizing<[u8; 32]>>, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        blocking(move || Ok(store.pin()?.map(|p| p.master.backup_key()))).await
    }
}

/// Enrols a vault for `master` under `pin` at the guardians, turns the lock on, and saves
/// the master secret and a verifier.
pub(super) async fn enrol_pin(
    shared: &Shared,
    conn: &Connection,
    pin: &NormalizedPin,
    master: MasterSecret,
) -> Result<(), ClientError> {
    crate::pin::enrol(
        conn,
        &shared.config,
        &shared.engine.address.account,
        pin,
        &master,
    )
    .await?;
    save_pin(shared, pin, master).await?;
    tracing::info!("PIN set; registration lock on");
    Ok(())
}

/// Stores the master secret and a new local verifier of `pin`.
pub(super) async fn save_pin(
    shared: &Shared,
    pin: &NormalizedPin,
    master: MasterSecret,
) -> Result<(), ClientError> {
    let store = shared.engine.store.clone();
    let params = shared.config.pin_params;
    let pin = pin.clone();
    blocking(move || {
        let verifier =
            LocalVerifier::create(&pin, &params, &mut rand::rng()).map_err(ClientError::Pin)?;
        let reminder = ReminderState::new(crate::client::now_ms() / 1000);
        let mut batch = Batch::new();
        store.put_pin(
            &mut batch,
            &PinRecord {
                master,
                verifier: verifier.to_bytes(),
                reminder: reminder.encode().to_vec(),
            },
        );
        Ok(store.commit(batch)?)
    })
    .await
}
