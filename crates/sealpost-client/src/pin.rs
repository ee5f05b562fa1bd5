//! Two-step verification PIN (spec/pin.md): enrolment of the PIN vault at the guardians,
//! registration lock, recovery on a new device, and the local reminder check.
//!
//! The PIN never leaves the device. What leaves it: a blinded, Argon2id-stretched PIN to
//! each guardian (section 3), the shares and sealed vault at enrolment (section 6), success
//! tokens after a recovery, and the registration-lock token to the relay (section 10).

use crate::config::{ClientConfig, Guardian};
use crate::error::{ClientError, InternalError, ProtocolViolation, VaultUnavailable};
use crate::transport::{Connection, Transport};
use sealpost_pin::normalize::{NormalizedPin, normalize};
use sealpost_pin::oprf::{EvaluatedElement, Proof};
use sealpost_pin::threshold::GuardianResponse;
use sealpost_pin::vault::{self, MasterSecret};
use sealpost_wire::AccountId;
use sealpost_wire::relay::{ErrorCode, GuardianCredential, Request, Response};
use std::time::Duration;
use tokio::task::JoinSet;

/// A registration refused because of the account's registration lock (spec/pin.md
/// section 10): the relay verified the code and issued a recovery credential for the
/// guardians.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationLock {
    /// Time until the lock lapses if no device of the account connects meanwhile.
    pub lapses_in: Duration,
    /// Wrong registration-lock tokens the relay still accepts.
    pub attempts_remaining: u16,
    /// Recovery-scope credential for the guardians (valid one hour).
    pub(crate) credential: GuardianCredential,
}

impl RegistrationLock {
    /// Recovers the account key with `pin` through `config`'s guardians (spec/pin.md
    /// section 6.4) without registering: what [`crate::Client::register_with_pin`] does
    /// before it registers with the registration-lock token. Each wrong PIN uses one
    /// attempt at each guardian asked; a success resets their counts.
    pub async fn recover(
        &self,
        config: &ClientConfig,
        account: &AccountId,
        pin: &str,
    ) -> Result<RecoveredKey, ClientError> {
        let pin = normalized(pin)?;
        let (master, _reenrol) = recover(config, account, &self.credential, &pin).await?;
        Ok(RecoveredKey { master })
    }
}

/// An account key recovered with the PIN ([`RegistrationLock::recover`]).
pub struct RecoveredKey {
    master: MasterSecret,
}

impl RecoveredKey {
    /// The backup key (spec/pin.md section 6.1).
    pub fn backup_key(&self) -> sealpost_crypto::Zeroizing<[u8; 32]> {
        self.master.backup_key()
    }
}

impl std::fmt::Debug for RecoveredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveredKey(redacted)")
    }
}

/// Outcome of a local PIN reminder check ([`crate::Client::check_pin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// The PIN is right; the next reminder is due later.
    Correct,
    /// The PIN is wrong. Nothing was sent anywhere and no guardian attempt was used.
    Wrong,
    /// Too many wrong answers in a row: try again after this long.
    RateLimited {
        /// Time until the next check is allowed.
        retry_in: Duration,
    },
}

/// The PIN state of this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinStatus {
    /// Whether a PIN is set (registration lock on, vault enrolled).
    pub enabled: bool,
    /// Whether a "do you still remember your PIN" reminder is due.
    pub reminder_due: bool,
}

pub(crate) fn normalized(pin: &str) -> Result<NormalizedPin, ClientError> {
    normalize(pin).map_err(ClientError::InvalidPin)
}

fn pin_err(e: sealpost_pin::PinError) -> ClientError {
    ClientError::Pin(e)
}

fn unexpected(what: &'static str) -> ClientError {
    ClientError::protocol(ProtocolViolation::UnexpectedResponse {
        request: what,
        response: "another kind",
    })
}

/// Connections to the guardians of one operation (enrolment, recovery, deletion), opened
/// concurrently once and reused for each round of requests.
struct Links {
    conns: Vec<(u8, Result<Connection, ClientError>)>,
    transports: Vec<Transport>,
}

impl Links {
    async fn open(config: &ClientConfig, guardians: &[(u8, Guardian)]) -> Self {
        let mut set = JoinSet::new();
        for (index, g) in guardians {
            let (index, g, config) = (*index, g.clone(), config.clone());
            set.spawn(async move {
                let opened = async {
                    let transport = Transport::to_peer(
                        g.addr.clone(),
                        g.pins.clone(),
                        &g.server_name,
                        &config,
                    )?;
                    let conn = transport.connect().await;
                    Ok::<_, ClientError>((transport, conn))
                };
                (index, opened.await)
            });
        }
        let mut links = Self {
            conns: Vec::new(),
            transports: Vec::new(),
        };
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((index, Ok((transport, conn)))) => {
                    links.transports.push(transport);
                    links.conns.push((index, conn));
                }
                Ok((index, Err(e))) => links.conns.push((index, Err(e))),
                Err(e) => tracing::warn!(error = %e, "guardian connection task failed"),
            }
        }
        links
    }

    /// Sends one request to each listed guardian, concurrently. Results are sorted by
    /// guardian index; an `Error` response is [`ClientError::Relay`].
    async fn send(
        &self,
        requests: Vec<(u8, Guardian, Request)>,
    ) -> Vec<(u8, Result<Response, ClientError>)> {
        let mut set = JoinSet::new();
        for (index, _, req) in requests {
            let conn = self
                .conns
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, c)| c.clone())
                .unwrap_or(Err(ClientError::Internal(InternalError::UnknownGuardian)));
            set.spawn(async move {
                match conn {
                    Ok(conn) => (index, conn.request(&req).await),
                    Err(e) => (index, Err(e)),
                }
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => out.push(r),
                Err(e) => out.push((0, Err(ClientError::join(e)))),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out
    }

    /// Closes the connections; the QUIC draining period runs in the background.
    fn close(self) {
        for (_, c) in &self.conns {
            if let Ok(c) = c {
                c.close(0, b"done");
            }
        }
        let transports = self.transports;
        tokio::spawn(async move {
            for t in transports {
                t.close().await;
            }
        });
    }
}

fn indexed(config: &ClientConfig) -> Vec<(u8, Guardian)> {
    config
        .guardians
        .list()
        .iter()
        .enumerate()
        .map(|(i, g)| (u8::try_from(i + 1).unwrap_or(u8::MAX), g.clone()))
        .collect()
}

async fn credential(home: &Connection) -> Result<GuardianCredential, ClientError> {
    match home.request(&Request::GetGuardianCredential).await? {
        Response::Credential(c) => Ok(c),
        _ => Err(unexpected("GetGuardianCredential")),
    }
}

/// Enrols a new vault for `master` under `pin` at every configured guardian (all must
/// accept), then sets the registration lock at the relay (spec/pin.md section 11).
pub(crate) async fn enrol(
    home: &Connection,
    config: &ClientConfig,
    account: &AccountId,
    pin: &NormalizedPin,
    master: &MasterSecret,
) -> Result<(), ClientError> {
    let credential = credential(home).await?;
    let guardians = indexed(config);
    let n = guardians.len();
    let t = usize::from(config.guardians.threshold());
    let params = config.pin_params;
    let (pin_c, account_c, master_c) = (pin.clone(), account.as_str().to_owned(), master.clone());
    let enrollment = crate::client::blocking(move || {
        vault::enroll(
            &pin_c,
            &account_c,
            &master_c,
            t,
            n,
            &params,
            &mut rand::rng(),
        )
        .map_err(pin_err)
    })
    .await?;
    let record = enrollment.record.encode();
    let mut requests = Vec::with_capacity(n);
    for g in &enrollment.guardians {
        let Some((_, guardian)) = guardians.iter().find(|(i, _)| *i == g.index) else {
            return Err(ClientError::Internal(InternalError::UnknownGuardian));
        };
        requests.push((
            g.index,
            guardian.clone(),
            Request::VaultStore {
                credential: credential.clone(),
                share: *g.share.to_bytes(),
                success_verifier: g.success_verifier,
                record: record.clone(),
            },
        ));
    }
    let links = Links::open(config, &guardians).await;
    let results = links.send(requests).await;
    links.close();
    for (index, r) in results {
        match r {
            Ok(Response::VaultStored) => {}
            Ok(_) => return Err(unexpected("VaultStore")),
            Err(e) => {
                tracing::warn!(guardian = index, error = %e, "guardian did not store the vault");
                return Err(e);
            }
        }
    }
    let token = master.reglock_token();
    match home
        .request(&Request::SetRegistrationLock {
            token: *token.as_bytes(),
        })
        .await?
    {
        Response::RegistrationLockSet => Ok(()),
        _ => Err(unexpected("SetRegistrationLock")),
    }
}

/// Removes the registration lock, then deletes the vault at every guardian (so the account
/// is never left locked with a deleted vault). Fails if a guardian cannot be reached; run
/// it again then.
pub(crate) async fn disable(home: &Connection, config: &ClientConfig) -> Result<(), ClientError> {
    match home.request(&Request::ClearRegistrationLock).await? {
        Response::RegistrationLockCleared => {}
        _ => return Err(unexpected("ClearRegistrationLock")),
    }
    let credential = credential(home).await?;
    let guardians = indexed(config);
    let requests = guardians
        .iter()
        .cloned()
        .map(|(i, g)| {
            (
                i,
                g,
                Request::VaultDelete {
                    credential: credential.clone(),
                },
            )
        })
        .collect();
    let links = Links::open(config, &guardians).await;
    let results = links.send(requests).await;
    links.close();
    for (index, r) in results {
        match r {
            Ok(Response::VaultDeleted) => {}
            Ok(_) => return Err(unexpected("VaultDelete")),
            Err(e) => {
                tracing::warn!(guardian = index, error = %e, "guardian did not delete the vault");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Recovers the master secret through the guardians with a credential (spec/pin.md
/// section 6.4): fetch the records, choose the one most guardians agree on, evaluate at
/// `t` of them (more if some fail or answer garbage), open the vault, confirm success.
pub(crate) async fn recover(
    config: &ClientConfig,
    account: &AccountId,
    credential: &GuardianCredential,
    pin: &NormalizedPin,
) -> Result<(MasterSecret, bool), ClientError> {
    let guardians = indexed(config);
    let links = Links::open(config, &guardians).await;
    let result = recover_over(&links, config, &guardians, account, credential, pin).await;
    links.close();
    result
}

async fn recover_over(
    links: &Links,
    config: &ClientConfig,
    guardians: &[(u8, Guardian)],
    account: &AccountId,
    credential: &GuardianCredential,
    pin: &NormalizedPin,
) -> Result<(MasterSecret, bool), ClientError> {
    let t = usize::from(config.guardians.threshold());
    let by_index = |i: u8| {
        guardians
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, g)| g.clone())
    };

    // 1. Records.
    let requests = guardians
        .iter()
        .map(|(i, g)| {
            (
                *i,
                g.clone(),
                Request::VaultFetch {
                    credential: credential.clone(),
                },
            )
        })
        .collect();
    let mut candidates = Vec::new();
    let mut gone = 0usize;
    for (index, r) in links.send(requests).await {
        match r {
            Ok(Response::Vault {
                index: claimed,
                record,
                ..
            }) if claimed == index => {
                candidates.push((index, record));
            }
            Ok(_) => tracing::warn!(guardian = index, "guardian answered VaultFetch wrongly"),
            Err(ClientError::Relay {
                code: ErrorCode::VaultNotFound,
                ..
            }) => gone += 1,
            Err(e) => tracing::warn!(guardian = index, error = %e, "guardian unavailable"),
        }
    }
    let too_few = |agreeing: usize, needed: usize| {
        ClientError::VaultUnavailable(VaultUnavailable::TooFewRecords {
            guardians: guardians.len(),
            returned: candidates.len(),
            without_vault: gone,
            agreeing,
            needed,
        })
    };
    let chosen = vault::choose_record(&candidates).map_err(|e| match e {
        sealpost_pin::PinError::VaultUnavailable { agreeing, needed } => {
            too_few(agreeing, needed.max(t))
        }
        _ => too_few(0, t),
    })?;
    if chosen.agreeing.len() < t {
        return Err(too_few(chosen.agreeing.len(), t));
    }
    let record = chosen.record;
    for bad in &chosen.disagreeing {
        tracing::warn!(
            guardian = bad,
            "guardian returned a different vault record; not used"
        );
    }
    let mut queue: std::collections::VecDeque<u8> = chosen.agreeing.into_iter().collect();

    // 2. Stretch and blind, off the async runtime (Argon2id).
    let vault_id = *record.vault_id();
    let (pin_c, account_c) = (pin.clone(), account.as_str().to_owned());
    let (recovery, blinded) = crate::client::blocking(move || {
        vault::Recovery::start(&pin_c, &account_c, record, &mut rand::rng()).map_err(pin_err)
    })
    .await?;
    let blinded_bytes = blinded.to_bytes();

    // 3. Evaluate: t guardians first, more only to replace failed or faulty ones.
    let mut valid: Vec<GuardianResponse> = Vec::new();
    let mut min_remaining = u16::MAX;
    let mut last_err = None;
    loop {
        let need = t.saturating_sub(valid.len());
        if need == 0 {
            break;
        }
        let batch: Vec<(u8, Guardian, Request)> = std::iter::from_fn(|| queue.pop_front())
            .take(need)
            .filter_map(|i| {
                by_index(i).map(|g| {
                    (
                        i,
                        g,
                        Request::VaultEvaluate {
                            credential: credential.clone(),
                            vault_id,
                            blinded: blinded_bytes,
                        },
                    )
                })
            })
            .collect();
        if batch.is_empty() {
            break;
        }
        for (index, r) in links.send(batch).await {
            match r {
                Ok(Response::VaultEvaluated {
                    index: claimed,
                    evaluated,
                    proof,
                    attempts_remaining,
                }) => {
                    min_remaining = min_remaining.min(attempts_remaining);
                    let response = match (
                        EvaluatedElement::from_slice(&evaluated),
                        Proof::from_slice(&proof),
                    ) {
                        (Ok(evaluated), Ok(proof)) if claimed == index => Some(GuardianResponse {
                            index,
                            evaluated,
                            proof,
                        }),
                        _ => None,
                    };
                    match response {
                        Some(resp)
                            if recovery
                                .record()
                                .guardians()
                                .verify_responses(recovery.blinded(), &[resp])
                                .0
                                .len()
                                == 1 =>
                        {
                            valid.push(resp);
                        }
                        _ => tracing::warn!(
                            guardian = index,
                            "guardian answer failed verification; not trusted"
                        ),
                    }
                }
                Ok(_) => {
                    tracing::warn!(guardian = index, "guardian answered VaultEvaluate wrongly")
                }
                Err(e) => {
                    tracing::warn!(guardian = index, error = %e, "guardian did not evaluate");
                    last_err = Some(e);
                }
            }
        }
    }
    if valid.len() < t {
        return Err(match last_err {
            Some(e @ ClientError::Relay { .. }) => e,
            _ => ClientError::VaultUnavailable(VaultUnavailable::TooFewEvaluations {
                valid: valid.len(),
                needed: t,
            }),
        });
    }
    let recovered = match recovery.finish(&valid) {
        Ok(r) => r,
        Err(sealpost_pin::PinError::WrongPin) => {
            return Err(ClientError::WrongPin {
                attempts_remaining: min_remaining,
            });
        }
        Err(e) => return Err(pin_err(e)),
    };

    // 4. Confirm: resets the attempt counts. A guardian that deleted its share on the last
    // attempt answers VaultNotFound: then the vault must be enrolled again.
    let requests = recovered
        .success_tokens
        .iter()
        .filter_map(|(i, token)| {
            by_index(*i).map(|g| {
                (
                    *i,
                    g,
                    Request::VaultConfirm {
                        credential: credential.clone(),
                        vault_id,
                        token: *token.as_bytes(),
                    },
                )
            })
        })
        .collect();
    let mut reenrol = false;
    for (index, r) in links.send(requests).await {
        match r {
            Ok(_) => {}
            Err(ClientError::Relay {
                code: ErrorCode::VaultNotFound,
                ..
            }) => {
                tracing::info!(guardian = index, "guardian no longer holds its share");
                reenrol = true;
            }
            Err(e) => {
                tracing::info!(guardian = index, error = %e, "guardian did not confirm the recovery");
            }
        }
    }
    Ok((recovered.master, reenrol))
}
