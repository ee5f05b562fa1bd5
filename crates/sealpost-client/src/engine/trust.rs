//! Identities and trust: what a device's identity was, whether sending to an account is
//! held (spec/client-store.md section 11), safety numbers and verification.

use super::*;

impl Engine {
    /// Records the identity of a device; returns an event if it differs from the identity
    /// stored for that device, or if the device is new to an account whose other known
    /// identities (`known`, read before this batch) do not include it: `SafetyNumberChanged`
    /// for an unverified account, `VerifiedIdentityChanged` for a verified one (an account
    /// with a device in `known` that is verified or changed since verification), whose new
    /// identity then holds sending until approved (spec/client-store.md section 11).
    pub(super) fn note_identity(
        &self,
        batch: &mut Batch,
        address: &DeviceAddress,
        identity: &IdentityKey,
        known: &[Contact],
        now_ms: u64,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let verified_account = known
            .iter()
            .any(|c| c.verification != Verification::Unverified);
        let (verification, event) = if verified_account {
            (
                Verification::ChangedSinceVerified,
                ClientEvent::VerifiedIdentityChanged {
                    account: address.account.clone(),
                    device: address.device,
                },
            )
        } else {
            (
                Verification::Unverified,
                ClientEvent::SafetyNumberChanged {
                    account: address.account.clone(),
                    device: address.device,
                },
            )
        };
        match self.store.contact(address)? {
            Some(c) if &c.identity == identity => Ok(None),
            Some(c) => {
                self.store.put_contact(
                    batch,
                    &Contact {
                        address: address.clone(),
                        identity: *identity,
                        first_seen: c.first_seen,
                        changed_at: now_ms,
                        verification,
                    },
                );
                Ok(Some(event))
            }
            None => {
                let new_to_known_account =
                    !known.is_empty() && !known.iter().any(|c| &c.identity == identity);
                // A device of a verified account with an identity the user verified
                // elsewhere (the same identity on another device id) stays verified.
                let verification = match known.iter().find(|c| &c.identity == identity) {
                    Some(c) => c.verification,
                    None => verification,
                };
                self.store.put_contact(
                    batch,
                    &Contact {
                        address: address.clone(),
                        identity: *identity,
                        first_seen: now_ms,
                        changed_at: now_ms,
                        verification,
                    },
                );
                Ok(new_to_known_account.then_some(event))
            }
        }
    }

    // ---------------------------------------------------------------- verification

    /// Whether sending to `account` is held: a device of the verified account has an
    /// identity the user has not approved.
    pub(super) fn held(&self, account: &AccountId) -> Result<bool, ClientError> {
        if self
            .store
            .list_pin(account)?
            .is_some_and(|p| p.verification == Verification::ChangedSinceVerified)
        {
            return Ok(true);
        }
        Ok(self
            .store
            .contacts(account)?
            .iter()
            .any(|c| c.verification == Verification::ChangedSinceVerified))
    }

    /// Fails with [`ClientError::UnapprovedIdentity`] if sending to `account` is held.
    pub(crate) fn check_sendable(&self, account: &AccountId) -> Result<(), ClientError> {
        if self.held(account)? {
            return Err(ClientError::UnapprovedIdentity);
        }
        Ok(())
    }

    /// The safety number with `account` over both account keys (fingerprint version 1,
    /// spec/devices.md 8.4), when this account and `account` both have lists; with the
    /// pin.
    pub(crate) fn account_safety_number(
        &self,
        account: &AccountId,
    ) -> Result<Option<(crate::store::ListPin, SafetyNumber)>, ClientError> {
        let Some(own) = self.own_devices()? else {
            return Ok(None);
        };
        let Some(pin) = self.store.list_pin(account)? else {
            return Ok(None);
        };
        let number = SafetyNumber::for_account_keys(
            &own.list.account_key().to_bytes(),
            &self.address.account,
            &pin.list.account_key().to_bytes(),
            account,
        );
        Ok(Some((pin, number)))
    }

    /// The verification state shown for a device: its account's when both accounts have
    /// lists, else the contact's.
    pub(crate) fn verification(
        &self,
        address: &DeviceAddress,
    ) -> Result<Verification, ClientError> {
        if let Some((pin, _)) = self.account_safety_number(&address.account)?
            && pin.list.device(address.device.0).is_some()
        {
            return Ok(pin.verification);
        }
        Ok(self.safety_number(address)?.0.verification)
    }

    /// The safety number shown for a device: over account keys when both accounts have
    /// lists, else over the device identities.
    pub(crate) fn shown_safety_number(
        &self,
        address: &DeviceAddress,
    ) -> Result<SafetyNumber, ClientError> {
        if let Some((pin, number)) = self.account_safety_number(&address.account)?
            && pin.list.device(address.device.0).is_some()
        {
            return Ok(number);
        }
        Ok(self.safety_number(address)?.1)
    }

    /// The safety number with a known device.
    pub(crate) fn safety_number(
        &self,
        address: &DeviceAddress,
    ) -> Result<(Contact, SafetyNumber), ClientError> {
        let contact = self
            .store
            .contact(address)?
            .ok_or(ClientError::UnknownContact)?;
        let number = SafetyNumber::new(
            &self.identity.public(),
            &self.address.account,
            &contact.identity,
            &address.account,
        );
        Ok((contact, number))
    }

    /// Marks a device verified if `digits` (the 60 digits, spaces allowed) is its current
    /// safety number. Verifying a changed identity also approves it.
    pub(crate) fn mark_verified(
        &self,
        address: &DeviceAddress,
        digits: &str,
    ) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let given: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
        if let Some((mut pin, number)) = self.account_safety_number(&address.account)?
            && pin.list.device(address.device.0).is_some()
        {
            if given != number.digits() {
                return Err(ClientError::SafetyNumberMismatch);
            }
            pin.verification = Verification::Verified;
            let mut batch = Batch::new();
            self.store.put_list_pin(&mut batch, &pin);
            // The account is verified as a whole: no device of it holds sending any more.
            for mut c in self.store.contacts(&address.account)? {
                if c.verification == Verification::ChangedSinceVerified {
                    c.verification = Verification::Unverified;
                    self.store.put_contact(&mut batch, &c);
                }
            }
            self.store.commit(batch)?;
            return Ok(());
        }
        let (mut contact, number) = self.safety_number(address)?;
        if given != number.digits() {
            return Err(ClientError::SafetyNumberMismatch);
        }
        contact.verification = Verification::Verified;
        let mut batch = Batch::new();
        self.store.put_contact(&mut batch, &contact);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Accepts the changed identities of a verified account without verifying them: they
    /// become unverified and sending resumes. Returns how many were approved.
    pub(crate) fn approve_identity(&self, account: &AccountId) -> Result<usize, ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let mut approved = 0;
        if let Some(mut pin) = self.store.list_pin(account)?
            && pin.verification == Verification::ChangedSinceVerified
        {
            pin.verification = Verification::Unverified;
            self.store.put_list_pin(&mut batch, &pin);
            approved += 1;
        }
        for mut c in self.store.contacts(account)? {
            if c.verification == Verification::ChangedSinceVerified {
                c.verification = Verification::Unverified;
                self.store.put_contact(&mut batch, &c);
                approved += 1;
            }
        }
        self.store.commit(batch)?;
        Ok(approved)
    }

    // ---------------------------------------------------------------- receiving
}
