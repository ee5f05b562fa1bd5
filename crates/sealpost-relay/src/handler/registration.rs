//! Registration: `RequestCode` (with its quotas), `Register` (with the registration lock),
//! `SetRegistrationLock` / `ClearRegistrationLock`.

use super::*;

/// Whether `account` is an E.164 number: `+` then 8 to 15 ASCII digits, the first not `0`.
pub fn is_e164(account: &AccountId) -> bool {
    let s = account.as_str().as_bytes();
    match s.split_first() {
        Some((b'+', digits)) => {
            (8..=15).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && digits.first() != Some(&b'0')
        }
        _ => false,
    }
}

/// Two-digit country calling codes (ITU-T E.164 assignments; zones 1 and 7 are one digit,
/// every other code not listed here has three digits).
pub(super) const TWO_DIGIT_CALLING_CODES: [&[u8; 2]; 44] = [
    b"20", b"27", b"30", b"31", b"32", b"33", b"34", b"36", b"39", b"40", b"41", b"43", b"44",
    b"45", b"46", b"47", b"48", b"49", b"51", b"52", b"53", b"54", b"55", b"56", b"57", b"58",
    b"60", b"61", b"62", b"63", b"64", b"65", b"66", b"81", b"82", b"84", b"86", b"90", b"91",
    b"92", b"93", b"94", b"95", b"98",
];

/// The country calling code of an E.164 number, with its `+` (spec/relay.md 7.1): `+1`
/// (the whole North American zone) and `+7` are one digit, the 44 two-digit codes of
/// ITU-T E.164 are two, every other code is the first three digits. Codes with the same
/// leading digits share one prefix, so the split needs no table of the three-digit codes.
/// `account` must pass [`is_e164`] (8+ digits); anything shorter gives its whole string.
pub fn calling_code(account: &AccountId) -> &str {
    let s = account.as_str();
    let digits = s.as_bytes().get(1..).unwrap_or_default();
    let len = match digits {
        [b'1' | b'7', ..] => 1,
        [a, b, ..] if TWO_DIGIT_CALLING_CODES.contains(&&[*a, *b]) => 2,
        _ => 3,
    };
    s.get(..1 + len).unwrap_or(s)
}

impl Handler {
    pub(super) fn random_code(&self) -> VerificationCode {
        // Uniform in 0..=999999: reject the top 967295 values of u32 (4294 * 10^6 fits).
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let x = rng.next_u32();
            if x < 4_294_000_000 {
                let mut n = x % 1_000_000;
                let mut digits = [b'0'; CODE_LEN];
                for d in digits.iter_mut().rev() {
                    *d = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                if let Some(code) = VerificationCode::new(digits) {
                    return code;
                }
            }
        }
    }

    pub(super) fn code_mac(
        &self,
        account: &AccountId,
        code: &[u8; CODE_LEN],
    ) -> [u8; CODE_MAC_LEN] {
        let mut w = Writer::new();
        account.encode_into(&mut w);
        w.bytes(code);
        let input = Zeroizing::new(w.into_bytes());
        hmac_sha256(self.code_key.as_slice(), &input)
    }

    pub(super) async fn request_code(
        &self,
        conn: &mut ConnectionState,
        account: &AccountId,
        now: u64,
    ) -> Response {
        if !is_e164(account) {
            return Response::error(ErrorCode::InvalidAccount, "account is not an E.164 number");
        }
        if let Err(s) = conn
            .code_requests
            .try_take(self.limits.code_connection_rate(), now)
        {
            return rate_limited("code_connection", s);
        }
        let quotas = [
            QuotaCheck {
                kind: QuotaKind::CodeNumber,
                subject: account.as_str().to_owned(),
                rate: self.limits.code_account_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::CodeSource,
                subject: conn.source_subject(),
                rate: self.limits.code_source_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::CodeCountry,
                subject: calling_code(account).to_owned(),
                rate: self.limits.code_country_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::CodeGlobal,
                subject: String::new(),
                rate: self.limits.code_global_rate(),
            },
        ];
        if let Err(r) = self.take_quotas(&quotas, now).await {
            return *r;
        }
        let code = self.random_code();
        let mac = self.code_mac(account, code.as_bytes());
        let expires_at = now.saturating_add(u64::from(CODE_TTL_SECS) * 1000);
        if let Err(e) = self.store.put_code(account, &mac, expires_at).await {
            return internal(&e);
        }
        self.code_sender.send_code(account, &code);
        tracing::info!(conn = conn.id, account = ?account, "verification code issued");
        Response::CodeSent {
            expires_in: CODE_TTL_SECS,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn register(
        &self,
        exporter: &[u8; 32],
        account: &AccountId,
        code: &[u8; CODE_LEN],
        identity: &IdentityBytes,
        signature: &[u8; 64],
        reglock_verifier: Option<[u8; 32]>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        if !is_e164(account) {
            return Response::error(ErrorCode::InvalidAccount, "account is not an E.164 number");
        }
        let stored = match self
            .store
            .begin_code_attempt(account, now, CODE_MAX_ATTEMPTS)
            .await
        {
            Ok(CodeAttempt::Missing | CodeAttempt::Expired) => {
                return Response::error(ErrorCode::CodeInvalid, "no valid code");
            }
            Ok(CodeAttempt::Exhausted) => {
                return Response::error(
                    ErrorCode::CodeAttemptsExceeded,
                    "too many wrong codes; request a new one",
                );
            }
            Ok(CodeAttempt::Check { mac, .. }) => mac,
            Err(e) => return internal(&e),
        };
        let presented = self.code_mac(account, code);
        if !ct_eq(&presented, &stored) {
            tracing::info!(account = ?account, "wrong verification code");
            return Response::error(ErrorCode::CodeInvalid, "wrong code");
        }
        let signed = register_signed_bytes(exporter, account, identity);
        let valid = VerifyingKey::from_bytes(&identity.signing)
            .and_then(|k| k.verify(&signed, &Signature::from_bytes(*signature)))
            .is_ok();
        if !valid {
            return Response::error(
                ErrorCode::InvalidSignature,
                "registration signature does not verify",
            );
        }
        let policy = RegLockPolicy {
            presented: reglock_verifier,
            max_failures: u32::from(REGLOCK_MAX_ATTEMPTS),
            lapse: REGLOCK_LAPSE.saturating_mul(1000),
        };
        match self
            .store
            .register_device(account, identity, &stored, &policy, now)
            .await
        {
            Ok(RegisterOutcome::Locked {
                lapses_at,
                attempts_remaining,
            }) => {
                tracing::info!(
                    account = ?account,
                    attempts_remaining,
                    token = reglock_verifier.is_some(),
                    "registration refused: registration lock"
                );
                Response::RegistrationLocked {
                    lapses_in: secs_ceil(lapses_at.saturating_sub(now)),
                    attempts_remaining: sat_u16(attempts_remaining),
                    credential: self.issue_credential(account, CredentialScope::Recovery, now),
                }
            }
            Ok(RegisterOutcome::Registered { device_id, removed }) => {
                tracing::info!(
                    account = ?account,
                    device_id,
                    removed = removed.len(),
                    "device registered"
                );
                if !removed.is_empty() {
                    effects.push(Effect::DevicesRemoved {
                        account: account.clone(),
                        devices: removed,
                    });
                }
                Response::Registered { device_id }
            }
            Ok(RegisterOutcome::CodeGone) => {
                Response::error(ErrorCode::CodeInvalid, "code already used")
            }
            Ok(RegisterOutcome::DeviceIdsExhausted) => {
                Response::error(ErrorCode::Internal, "device ids exhausted")
            }
            Err(e) => internal(&e),
        }
    }

    pub(super) async fn set_registration_lock(
        &self,
        me: &AuthenticatedDevice,
        verifier: Option<&[u8; 32]>,
        now: u64,
    ) -> Response {
        let account = &me.address.account;
        match self
            .store
            .set_registration_lock(account, verifier, now)
            .await
        {
            Ok(true) => {
                tracing::info!(account = ?account, set = verifier.is_some(), "registration lock changed");
                if verifier.is_some() {
                    Response::RegistrationLockSet
                } else {
                    Response::RegistrationLockCleared
                }
            }
            Ok(false) => Response::error(ErrorCode::UnknownAccount, "account is not registered"),
            Err(e) => internal(&e),
        }
    }
}
