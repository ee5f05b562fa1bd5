//! The guardian role (spec/pin.md sections 7 and 9): which accounts this relay keeps vault
//! shares for, which credential issuers it trusts, and how many evaluations a vault allows.
//! Pure data and checks; the requests are handled by [`crate::Handler`].

use crate::ConfigError;
use sealpost_crypto::ed25519::VerifyingKey;
use sealpost_wire::AccountId;

/// Default evaluations per vault between successes (spec/pin.md section 12).
pub const DEFAULT_MAX_ATTEMPTS: u16 = 10;
/// Largest configurable `max_attempts`.
pub const MAX_MAX_ATTEMPTS: u16 = 100;
/// Default number of vaults a guardian keeps.
pub const DEFAULT_MAX_VAULTS: u64 = 1_000_000;

/// The `[guardian]` configuration section (spec/pin.md section 9).
///
/// The default is the 1-of-1 deployment of spec/pin.md section 13: enabled for every
/// account, trusting only this relay's own issuer key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "server", serde(default, deny_unknown_fields))]
pub struct GuardianConfig {
    /// Whether vault requests are served (else they are answered `NotGuardian`).
    pub enabled: bool,
    /// Evaluations per vault between successes, `1..=100` (default 10). The last one deletes
    /// the vault.
    pub max_attempts: u16,
    /// Account patterns served: `"*"` (all) or an E.164 prefix such as `"+1555"`.
    pub accounts: Vec<String>,
    /// Ed25519 public keys (64 hex digits) of other relays whose credentials are accepted.
    /// This relay's own issuer key is always trusted.
    pub trusted_issuers: Vec<String>,
    /// Most vaults stored; `VaultStore` for a new account beyond it is `NotGuardian`.
    pub max_vaults: u64,
}

impl Default for GuardianConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            accounts: vec!["*".into()],
            trusted_issuers: Vec::new(),
            max_vaults: DEFAULT_MAX_VAULTS,
        }
    }
}

impl GuardianConfig {
    /// The guardian role switched off (other settings at their defaults).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Checks every field; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::OutOfRange {
                key: "guardian.max_attempts",
                value: self.max_attempts.into(),
                min: 1,
                max: MAX_MAX_ATTEMPTS.into(),
            });
        }
        if self.max_vaults == 0 {
            return Err(ConfigError::NotPositive {
                key: "guardian.max_vaults",
            });
        }
        if self.enabled && self.accounts.is_empty() {
            return Err(ConfigError::NoGuardianAccounts);
        }
        for p in &self.accounts {
            let prefix_ok = p
                .strip_prefix('+')
                .is_some_and(|d| d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()));
            if p != "*" && !prefix_ok {
                return Err(ConfigError::AccountPattern { pattern: p.clone() });
            }
        }
        self.trusted_issuer_keys().map(|_| ())
    }

    /// The trusted issuer keys, parsed (64 hex digits, a valid Ed25519 public key each).
    pub fn trusted_issuer_keys(&self) -> Result<Vec<[u8; 32]>, ConfigError> {
        self.trusted_issuers
            .iter()
            .map(|h| {
                let mut key = [0u8; 32];
                let valid_hex = h.len() == 64
                    && h.as_bytes()
                        .chunks(2)
                        .zip(key.iter_mut())
                        .all(|(pair, out)| {
                            std::str::from_utf8(pair)
                                .ok()
                                .and_then(|s| u8::from_str_radix(s, 16).ok())
                                .map(|b| *out = b)
                                .is_some()
                        });
                if !valid_hex {
                    return Err(ConfigError::IssuerKeyNotHex { key: h.clone() });
                }
                VerifyingKey::from_bytes(&key)
                    .map_err(|_| ConfigError::IssuerKeyInvalid { key: h.clone() })?;
                Ok(key)
            })
            .collect()
    }

    /// Whether the account matches one of the patterns.
    pub fn covers(&self, account: &AccountId) -> bool {
        self.accounts
            .iter()
            .any(|p| p == "*" || account.as_str().starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_patterns() {
        assert_eq!(GuardianConfig::default().validate(), Ok(()));
        let with = |f: &dyn Fn(&mut GuardianConfig)| {
            let mut c = GuardianConfig::default();
            f(&mut c);
            c.validate()
        };
        assert_eq!(
            with(&|c| c.max_attempts = 0),
            Err(ConfigError::OutOfRange {
                key: "guardian.max_attempts",
                value: 0,
                min: 1,
                max: 100
            })
        );
        assert!(with(&|c| c.max_attempts = 101).is_err());
        assert_eq!(with(&|c| c.max_attempts = 100), Ok(()));
        assert!(with(&|c| c.max_vaults = 0).is_err());
        assert!(with(&|c| c.accounts = vec![]).is_err());
        assert!(with(&|c| c.accounts = vec!["1555".into()]).is_err());
        assert!(with(&|c| c.trusted_issuers = vec!["zz".repeat(32)]).is_err());
        assert!(with(&|c| c.trusted_issuers = vec!["ab".repeat(31)]).is_err());
        let key = sealpost_crypto::ed25519::SigningKey::from_seed(&[3; 32])
            .verifying_key()
            .to_bytes();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let c = GuardianConfig {
            accounts: vec!["+1555".into(), "+44".into()],
            trusted_issuers: vec![hex.to_uppercase()],
            ..GuardianConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.trusted_issuer_keys().unwrap(), vec![key]);
        assert!(c.covers(&AccountId::new("+15550001111").unwrap()));
        assert!(c.covers(&AccountId::new("+447700900000").unwrap()));
        assert!(!c.covers(&AccountId::new("+16660001111").unwrap()));
        assert!(GuardianConfig::default().covers(&AccountId::new("+16660001111").unwrap()));
    }
}
