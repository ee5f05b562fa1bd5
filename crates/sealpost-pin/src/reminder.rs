//! PIN reminders (spec/pin.md section 11, "Reminders"): a local verifier kept in the client's
//! encrypted store, and the pure rate-limit and reminder schedule around checking it.
//!
//! * [`LocalVerifier`]: `Argon2id(P = normalize(PIN), S = 16 random bytes, params)`, never
//!   sent anywhere; checked in constant time.
//! * [`ReminderState`]: after [`FREE_FAILURES`] wrong answers in a row, one check per 30 s,
//!   doubling per further wrong answer up to one hour; reminders 1, 3, 7, 14, 14, … days
//!   after each correct answer, back to 1 day after a wrong one. Time is passed in (Unix
//!   seconds) so the policy is testable and persisted with the state.

use crate::{
    PinError,
    codec::{ByteReader, read_params, write_params},
    normalize::NormalizedPin,
    stretch::{Argon2Params, STRETCHED_LEN, argon2id},
};
use core::fmt;
use sealpost_crypto::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Version byte of the [`LocalVerifier`] encoding.
pub const LOCAL_VERIFIER_VERSION: u8 = 0x01;
/// Length of the local verifier's random salt.
pub const LOCAL_SALT_LEN: usize = 16;
/// Encoded length of a [`LocalVerifier`]: `version || salt: 16 || m, t, p: u32 || hash: 32`.
pub const LOCAL_VERIFIER_LEN: usize = 1 + LOCAL_SALT_LEN + 12 + STRETCHED_LEN;

/// Version byte of the [`ReminderState`] encoding.
pub const REMINDER_STATE_VERSION: u8 = 0x01;
/// Encoded length of a [`ReminderState`]:
/// `version || consecutive_failures: u32 || locked_until: u64 || next_reminder_at: u64 ||
/// interval_days: u8`.
pub const REMINDER_STATE_LEN: usize = 1 + 4 + 8 + 8 + 1;
/// Wrong answers in a row that are not rate-limited.
pub const FREE_FAILURES: u32 = 3;
/// Wait after the first rate-limited wrong answer, in seconds; doubles with each further one.
pub const INITIAL_BACKOFF_SECS: u64 = 30;
/// Longest wait between checks, in seconds.
pub const MAX_BACKOFF_SECS: u64 = 3600;
/// Reminder intervals in days: the `k`-th correct answer in a row schedules the next reminder
/// `REMINDER_INTERVALS_DAYS[min(k, 4) − 1]` days later.
pub const REMINDER_INTERVALS_DAYS: [u8; 4] = [1, 3, 7, 14];
const DAY_SECS: u64 = 86_400;

/// The local PIN verifier: a salted Argon2id hash of the normalised PIN. Secret (it allows
/// offline guessing), so it lives only in the client's encrypted store; zeroized on drop;
/// `Debug` prints only the parameters.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LocalVerifier {
    salt: [u8; LOCAL_SALT_LEN],
    #[zeroize(skip)]
    params: Argon2Params,
    hash: [u8; STRETCHED_LEN],
}

impl LocalVerifier {
    /// Hashes `pin` with a fresh salt. `params` must pass [`Argon2Params::check_accepted`].
    pub fn create<R: CryptoRng + ?Sized>(
        pin: &NormalizedPin,
        params: &Argon2Params,
        rng: &mut R,
    ) -> Result<Self, PinError> {
        let mut salt = [0u8; LOCAL_SALT_LEN];
        rng.fill_bytes(&mut salt);
        Self::create_with_salt(pin, params, salt)
    }

    /// [`LocalVerifier::create`] with a caller-chosen salt: for test vectors only
    /// (`hazmat::local_verifier_with_salt`).
    pub(crate) fn create_with_salt(
        pin: &NormalizedPin,
        params: &Argon2Params,
        salt: [u8; LOCAL_SALT_LEN],
    ) -> Result<Self, PinError> {
        params.check_accepted()?;
        let hash = argon2id(pin.as_bytes(), &salt, params)?;
        Ok(Self {
            salt,
            params: *params,
            hash: *hash,
        })
    }

    /// Whether `pin` is the PIN this verifier was made from (constant-time comparison). Costs
    /// one Argon2id; rate-limit with [`ReminderState::check`].
    pub fn verify(&self, pin: &NormalizedPin) -> Result<bool, PinError> {
        let hash = argon2id(pin.as_bytes(), &self.salt, &self.params)?;
        Ok(bool::from(hash.ct_eq(&self.hash)))
    }

    /// The Argon2id parameters.
    pub const fn params(&self) -> &Argon2Params {
        &self.params
    }

    /// `version (0x01) || salt: 16 || m: u32 || t: u32 || p: u32 || hash: 32` (61 bytes,
    /// integers big-endian).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(LOCAL_VERIFIER_LEN));
        out.push(LOCAL_VERIFIER_VERSION);
        out.extend_from_slice(&self.salt);
        write_params(&mut out, &self.params);
        out.extend_from_slice(&self.hash);
        out
    }

    /// Parses [`LocalVerifier::to_bytes`]; rejects another version, parameters outside
    /// [`Argon2Params::check_accepted`], and wrong lengths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PinError> {
        const WHAT: &str = "local verifier";
        let mut r = ByteReader::new(WHAT, bytes);
        let version = r.u8()?;
        if version != LOCAL_VERIFIER_VERSION {
            return Err(PinError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let salt = r.array()?;
        let params = read_params(&mut r)?;
        let hash = r.array()?;
        r.finish()?;
        Ok(Self { salt, params, hash })
    }
}

impl fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalVerifier")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Rate limit and reminder schedule for local PIN checks (spec/pin.md section 11). Pure:
/// `now` is Unix seconds from the caller. Persist it ([`ReminderState::encode`]) after every
/// change so the limit survives restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderState {
    consecutive_failures: u32,
    locked_until: u64,
    next_reminder_at: u64,
    interval_days: u8,
}

impl ReminderState {
    /// The state when the PIN is set or changed at `now`: no failures, first reminder one day
    /// later.
    pub fn new(now: u64) -> Self {
        Self {
            consecutive_failures: 0,
            locked_until: 0,
            next_reminder_at: now.saturating_add(DAY_SECS),
            interval_days: first_interval(),
        }
    }

    /// Whether a check is allowed at `now` (not within a back-off).
    pub const fn can_check(&self, now: u64) -> bool {
        now >= self.locked_until
    }

    /// Earliest time a check is allowed (0 if never locked).
    pub const fn locked_until(&self) -> u64 {
        self.locked_until
    }

    /// Wrong answers in a row.
    pub const fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// When the next reminder is due (Unix seconds).
    pub const fn next_reminder_at(&self) -> u64 {
        self.next_reminder_at
    }

    /// The interval (days) the next correct answer schedules.
    pub const fn interval_days(&self) -> u8 {
        self.interval_days
    }

    /// Whether the client should ask for the PIN at `now`.
    pub const fn reminder_due(&self, now: u64) -> bool {
        now >= self.next_reminder_at
    }

    /// Records a check's result at `now`.
    ///
    /// * Correct: failures and back-off cleared; the next reminder is due `interval_days`
    ///   later and the interval steps 1 → 3 → 7 → 14 (then stays 14).
    /// * Wrong: `consecutive_failures += 1`; from the [`FREE_FAILURES`]-th one on, checks
    ///   are locked for `min(30·2^(failures − 3), 3600)` seconds; the interval drops back to 1
    ///   day; the reminder stays due.
    pub fn record_result(&mut self, correct: bool, now: u64) {
        if correct {
            self.consecutive_failures = 0;
            self.locked_until = 0;
            self.next_reminder_at =
                now.saturating_add(u64::from(self.interval_days).saturating_mul(DAY_SECS));
            self.interval_days = next_interval(self.interval_days);
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.interval_days = first_interval();
            if let Some(over) = self.consecutive_failures.checked_sub(FREE_FAILURES) {
                let shift = over.min(7);
                let wait = (INITIAL_BACKOFF_SECS << shift).min(MAX_BACKOFF_SECS);
                self.locked_until = now.saturating_add(wait);
            }
        }
    }

    /// Checks `pin` against `verifier` if the rate limit allows it at `now`, and records the
    /// result. Fails with [`PinError::ReminderRateLimited`] (without hashing) while locked.
    pub fn check(
        &mut self,
        verifier: &LocalVerifier,
        pin: &NormalizedPin,
        now: u64,
    ) -> Result<bool, PinError> {
        if !self.can_check(now) {
            return Err(PinError::ReminderRateLimited {
                retry_at: self.locked_until,
            });
        }
        let ok = verifier.verify(pin)?;
        self.record_result(ok, now);
        Ok(ok)
    }

    /// `version (0x01) || consecutive_failures: u32 || locked_until: u64 ||
    /// next_reminder_at: u64 || interval_days: u8` (22 bytes, big-endian).
    pub fn encode(&self) -> [u8; REMINDER_STATE_LEN] {
        let mut out = Vec::with_capacity(REMINDER_STATE_LEN);
        out.push(REMINDER_STATE_VERSION);
        out.extend_from_slice(&self.consecutive_failures.to_be_bytes());
        out.extend_from_slice(&self.locked_until.to_be_bytes());
        out.extend_from_slice(&self.next_reminder_at.to_be_bytes());
        out.push(self.interval_days);
        let mut arr = [0u8; REMINDER_STATE_LEN];
        for (dst, src) in arr.iter_mut().zip(out) {
            *dst = src;
        }
        arr
    }

    /// Parses [`ReminderState::encode`]; rejects another version, an interval that is not
    /// one of [`REMINDER_INTERVALS_DAYS`], and wrong lengths.
    pub fn decode(bytes: &[u8]) -> Result<Self, PinError> {
        const WHAT: &str = "reminder state";
        let mut r = ByteReader::new(WHAT, bytes);
        let version = r.u8()?;
        if version != REMINDER_STATE_VERSION {
            return Err(PinError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let consecutive_failures = r.u32()?;
        let locked_until = r.u64()?;
        let next_reminder_at = r.u64()?;
        let interval_days = r.u8()?;
        r.finish()?;
        if !REMINDER_INTERVALS_DAYS.contains(&interval_days) {
            return Err(PinError::InvalidValue("reminder interval"));
        }
        Ok(Self {
            consecutive_failures,
            locked_until,
            next_reminder_at,
            interval_days,
        })
    }
}

const fn first_interval() -> u8 {
    REMINDER_INTERVALS_DAYS[0]
}

fn next_interval(days: u8) -> u8 {
    let mut it = REMINDER_INTERVALS_DAYS.iter().skip_while(|&&d| d != days);
    it.next();
    it.next()
        .or(REMINDER_INTERVALS_DAYS.last())
        .copied()
        .unwrap_or(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;

    #[test]
    fn verifier_accepts_only_its_pin_and_round_trips() {
        let p = Argon2Params::testing();
        let v = LocalVerifier::create(&normalize("123456").unwrap(), &p, &mut rand::rng()).unwrap();
        assert!(v.verify(&normalize(" １２３４５６").unwrap()).unwrap());
        assert!(!v.verify(&normalize("123457").unwrap()).unwrap());
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), LOCAL_VERIFIER_LEN);
        let w = LocalVerifier::from_bytes(&bytes).unwrap();
        assert_eq!(*w.to_bytes(), *bytes);
        assert!(w.verify(&normalize("123456").unwrap()).unwrap());
        let printed = format!("{v:?}");
        assert!(
            !printed.contains("salt") && !printed.contains("hash"),
            "{printed}"
        );
    }

    #[test]
    fn verifier_decode_rejects() {
        let v = LocalVerifier::create_with_salt(
            &normalize("123456").unwrap(),
            &Argon2Params::testing(),
            [1; 16],
        )
        .unwrap();
        let good = v.to_bytes().to_vec();
        let mut bad = good.clone();
        bad[0] = 2;
        assert!(matches!(
            LocalVerifier::from_bytes(&bad),
            Err(PinError::UnsupportedVersion { version: 2, .. })
        ));
        assert!(matches!(
            LocalVerifier::from_bytes(&good[..60]),
            Err(PinError::Truncated { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            LocalVerifier::from_bytes(&long),
            Err(PinError::TrailingBytes { extra: 1, .. })
        ));
        let mut lanes0 = good;
        lanes0[28] = 0; // low byte of p
        assert!(matches!(
            LocalVerifier::from_bytes(&lanes0),
            Err(PinError::Argon2ParamsOutOfRange { lanes: 0, .. })
        ));
    }

    #[test]
    fn rate_limit_schedule() {
        let mut s = ReminderState::new(1000);
        for _ in 0..2 {
            s.record_result(false, 1000);
            assert!(s.can_check(1000));
        }
        let mut expected = 30;
        for _ in 0..10 {
            s.record_result(false, 1000);
            assert_eq!(s.locked_until(), 1000 + expected);
            assert!(!s.can_check(1000 + expected - 1));
            assert!(s.can_check(1000 + expected));
            expected = (expected * 2).min(3600);
        }
        assert_eq!(s.locked_until(), 1000 + 3600);
        s.record_result(true, 5000);
        assert_eq!(s.consecutive_failures(), 0);
        assert!(s.can_check(5000));
    }

    #[test]
    fn reminder_intervals() {
        let mut s = ReminderState::new(0);
        assert!(!s.reminder_due(DAY_SECS - 1));
        assert!(s.reminder_due(DAY_SECS));
        let mut now = DAY_SECS;
        for days in [1u64, 3, 7, 14, 14, 14] {
            s.record_result(true, now);
            assert_eq!(s.next_reminder_at(), now + days * DAY_SECS);
            now = s.next_reminder_at();
        }
        s.record_result(false, now);
        assert!(s.reminder_due(now));
        s.record_result(true, now);
        assert_eq!(s.next_reminder_at(), now + DAY_SECS);
    }

    #[test]
    fn check_is_refused_while_locked() {
        let p = Argon2Params::testing();
        let v = LocalVerifier::create(&normalize("123456").unwrap(), &p, &mut rand::rng()).unwrap();
        let wrong = normalize("000000").unwrap();
        let mut s = ReminderState::new(0);
        for _ in 0..3 {
            assert!(!s.check(&v, &wrong, 10).unwrap());
        }
        assert_eq!(
            s.check(&v, &normalize("123456").unwrap(), 20),
            Err(PinError::ReminderRateLimited { retry_at: 40 })
        );
        assert!(s.check(&v, &normalize("123456").unwrap(), 40).unwrap());
    }

    #[test]
    fn state_round_trip_and_rejects() {
        let mut s = ReminderState::new(123);
        s.record_result(false, 200);
        let b = s.encode();
        assert_eq!(ReminderState::decode(&b).unwrap(), s);
        let mut bad = b;
        bad[21] = 2;
        assert_eq!(
            ReminderState::decode(&bad),
            Err(PinError::InvalidValue("reminder interval"))
        );
        bad = b;
        bad[0] = 0;
        assert!(matches!(
            ReminderState::decode(&bad),
            Err(PinError::UnsupportedVersion { .. })
        ));
        assert!(ReminderState::decode(&b[..21]).is_err());
    }
}
