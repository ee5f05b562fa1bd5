//! Guardian vaults (spec/pin.md sections 7, 9): credentials and the `Vault*` requests.

use super::*;

/// Which vault request a credential is presented for (spec/pin.md section 7 scopes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VaultOp {
    Store,
    Fetch,
    Evaluate,
    Confirm,
    Delete,
}

impl VaultOp {
    fn permitted_by(self, scope: CredentialScope) -> bool {
        match scope {
            CredentialScope::Owner => true,
            CredentialScope::Recovery => {
                matches!(self, Self::Fetch | Self::Evaluate | Self::Confirm)
            }
        }
    }
}

impl Handler {
    /// Signs a credential for `account` valid for `CREDENTIAL_TTL` from `now` (ms).
    pub(super) fn issue_credential(
        &self,
        account: &AccountId,
        scope: CredentialScope,
        now: u64,
    ) -> GuardianCredential {
        let expires_at = (now / 1000).saturating_add(CREDENTIAL_TTL);
        let signed = credential_signed_bytes(account, scope, expires_at, &self.issuer_public);
        GuardianCredential {
            account: account.clone(),
            scope,
            expires_at,
            issuer: self.issuer_public,
            signature: self.issuer.sign(&signed).to_bytes(),
        }
    }

    /// The checks of spec/pin.md section 7, in order, then the per-account rate limit.
    /// `Err` carries the refusal (boxed: a `Response` is large).
    pub(super) fn check_credential(
        &self,
        c: &GuardianCredential,
        op: VaultOp,
        now: u64,
    ) -> Result<(), Box<Response>> {
        if !self.guardian.enabled {
            return Err(Box::new(Response::error(
                ErrorCode::NotGuardian,
                "this relay is not a guardian",
            )));
        }
        let invalid = |why: &str| Response::error(ErrorCode::CredentialInvalid, why);
        if c.issuer != self.issuer_public && !self.trusted_issuers.contains(&c.issuer) {
            return Err(Box::new(invalid("credential issuer is not trusted")));
        }
        let valid = VerifyingKey::from_bytes(&c.issuer)
            .and_then(|k| k.verify(&c.signed_bytes(), &Signature::from_bytes(c.signature)))
            .is_ok();
        if !valid {
            return Err(Box::new(invalid("credential signature does not verify")));
        }
        let now_s = now / 1000;
        if c.expires_at <= now_s {
            return Err(Box::new(invalid("credential expired")));
        }
        if c.expires_at > now_s + CREDENTIAL_TTL + CREDENTIAL_MAX_SKEW {
            return Err(Box::new(invalid("credential expiry too far in the future")));
        }
        if !op.permitted_by(c.scope) {
            return Err(Box::new(invalid(
                "credential scope does not permit this request",
            )));
        }
        if !self.guardian.covers(&c.account) {
            return Err(Box::new(Response::error(
                ErrorCode::NotGuardian,
                "this relay is not a guardian for this account",
            )));
        }
        if let Err(s) = self.vault_limiter.try_take(&c.account, now) {
            return Err(Box::new(rate_limited("vault", s)));
        }
        Ok(())
    }

    pub(super) fn max_attempts(&self) -> u32 {
        u32::from(self.guardian.max_attempts)
    }

    pub(super) fn remaining(&self, used: u32) -> u16 {
        sat_u16(self.max_attempts().saturating_sub(used))
    }

    pub(super) async fn vault_store(
        &self,
        c: &GuardianCredential,
        share: &[u8; VAULT_SHARE_LEN],
        success_verifier: &[u8; 32],
        record: Vec<u8>,
        now: u64,
    ) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Store, now) {
            return *r;
        }
        let invalid = |why: String| Response::error(ErrorCode::InvalidVault, why);
        let decoded = match VaultRecord::decode(&record) {
            Ok(r) => r,
            Err(e) => return invalid(format!("vault record: {e}")),
        };
        let key = match KeyShare::from_bytes(share) {
            Ok(k) => k,
            Err(_) => return invalid("the share does not decode".into()),
        };
        if check_share(&decoded, &key).is_err() {
            return invalid("the share does not match its commitment in the record".into());
        }
        let row = VaultRow {
            vault_id: *decoded.vault_id(),
            share: Zeroizing::new(*share),
            success_verifier: *success_verifier,
            record,
            attempts_used: 0,
        };
        match self
            .store
            .put_vault(&c.account, &row, self.guardian.max_vaults, now)
            .await
        {
            Ok(PutVaultOutcome::Stored) => {
                tracing::info!(account = ?c.account, index = key.index(), "vault stored");
                Response::VaultStored
            }
            Ok(PutVaultOutcome::Full) => {
                tracing::warn!("guardian holds max_vaults vaults; VaultStore refused");
                Response::error(ErrorCode::NotGuardian, "this guardian is full")
            }
            Err(e) => internal(&e),
        }
    }

    pub(super) async fn vault_fetch(&self, c: &GuardianCredential, now: u64) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Fetch, now) {
            return *r;
        }
        match self.store.vault(&c.account).await {
            Ok(Some(v)) => Response::Vault {
                index: v.index(),
                attempts_remaining: self.remaining(v.attempts_used),
                record: v.record.clone(),
            },
            Ok(None) => Response::error(ErrorCode::VaultNotFound, "no vault"),
            Err(e) => internal(&e),
        }
    }

    pub(super) async fn vault_evaluate(
        &self,
        c: &GuardianCredential,
        vault_id: &[u8; VAULT_ID_LEN],
        blinded: &[u8; 32],
        now: u64,
    ) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Evaluate, now) {
            return *r;
        }
        // An invalid element is no PIN guess: refused before anything is counted.
        let Ok(blinded) = BlindedElement::from_slice(blinded) else {
            return Response::error(
                ErrorCode::Malformed,
                "blinded element is not a canonical non-identity ristretto255 element",
            );
        };
        // Count (and at the limit delete) durably first; evaluate only after the commit.
        let (share, used, deleted) = match self
            .store
            .begin_vault_evaluation(&c.account, vault_id, self.max_attempts(), now)
            .await
        {
            Ok(VaultAttempt::Counted {
                share,
                attempts_used,
                deleted,
            }) => (share, attempts_used, deleted),
            Ok(VaultAttempt::NotFound) => {
                return Response::error(ErrorCode::VaultNotFound, "no vault with this id");
            }
            Ok(VaultAttempt::RolledBack) => {
                tracing::warn!(account = ?c.account, "evaluation of a held-back vault refused");
                return Response::error(
                    ErrorCode::VaultRolledBack,
                    "this guardian's database was restored from an older copy: the vault \
                     serves again once its owner stores or confirms it",
                );
            }
            Err(e) => return internal(&e),
        };
        let Ok(key) = KeyShare::from_bytes(share.as_slice()) else {
            tracing::error!(account = ?c.account, "stored vault share does not decode");
            return Response::error(ErrorCode::Internal, "stored share is corrupt");
        };
        let (evaluated, proof) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            key.key().evaluate(&blinded, &mut *rng)
        };
        if deleted {
            metrics::vault_deleted("attempts");
            tracing::info!(account = ?c.account, "vault deleted at the attempt limit");
        }
        Response::VaultEvaluated {
            index: key.index(),
            evaluated: evaluated.to_bytes(),
            proof: proof.to_bytes(),
            attempts_remaining: self.remaining(used),
        }
    }

    pub(super) async fn vault_confirm(
        &self,
        c: &GuardianCredential,
        vault_id: &[u8; VAULT_ID_LEN],
        token: SuccessToken,
        now: u64,
    ) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Confirm, now) {
            return *r;
        }
        let verifier = token.verifier();
        drop(token);
        match self
            .store
            .confirm_vault(&c.account, vault_id, &verifier, now)
            .await
        {
            Ok(ConfirmOutcome::Confirmed) => {
                tracing::info!(account = ?c.account, "vault confirmed; attempts reset");
                Response::VaultConfirmed {
                    attempts_remaining: self.remaining(0),
                }
            }
            Ok(ConfirmOutcome::Mismatch) => {
                Response::error(ErrorCode::CredentialInvalid, "wrong success token")
            }
            Ok(ConfirmOutcome::NotFound) => {
                Response::error(ErrorCode::VaultNotFound, "no vault with this id")
            }
            Err(e) => internal(&e),
        }
    }

    pub(super) async fn vault_delete(&self, c: &GuardianCredential, now: u64) -> Response {
        if let Err(r) = self.check_credential(c, VaultOp::Delete, now) {
            return *r;
        }
        match self.store.delete_vault(&c.account).await {
            Ok(existed) => {
                if existed {
                    metrics::vault_deleted("owner");
                }
                tracing::info!(account = ?c.account, existed, "vault deleted");
                Response::VaultDeleted
            }
            Err(e) => internal(&e),
        }
    }
}
