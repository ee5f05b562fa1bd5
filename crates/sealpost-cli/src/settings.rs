//! The data directory: `config.toml` (relay, its public-key pins, the account) and the
//! encrypted client store `store.db`; parsing of accounts and pins; the store passphrase.

use crate::progress::Step;
use anyhow::{Context as _, anyhow, bail};
use sealpost_client::{
    AccountId, Backoff, ClientConfig, Guardian, Guardians, RelayAddr, SpkiPinError, SpkiPins,
    Store, StoreError, StoreSecret, store::SqliteClientStore,
};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Configuration file in the data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Client store in the data directory.
pub const STORE_FILE: &str = "store.db";
/// Environment variable holding the store passphrase.
pub const PASSPHRASE_ENV: &str = "SEALPOST_PASSPHRASE";
/// Environment variable holding the two-step verification PIN (scripts and tests).
pub const PIN_ENV: &str = "SEALPOST_PIN";
/// Longest single request the CLI lets the SDK wait for.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What `config.toml` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The relay's nodes, `host:port` each, tried in order: `relay = "host:port"`, or a
    /// list for several nodes of one deployment.
    pub relay: Relays,
    /// The relay's public-key pins, `sha256/<base64>` (current key first, then the next).
    #[serde(default)]
    pub relay_pins: Vec<String>,
    /// Written by versions that pinned the whole certificate (64 hex digits): no longer
    /// accepted; [`Settings::client_config`] explains how to replace it.
    #[serde(default, skip_serializing)]
    pub fingerprint: Option<String>,
    /// Our account (E.164).
    pub account: String,
    /// Our device id, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<u32>,
    /// Guardians of the PIN vault, `host:port=pin[,pin…]`, in index order; empty: the
    /// relay alone (1-of-1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardians: Vec<String>,
    /// How many guardians recover the vault (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian_threshold: Option<u8>,
    /// Verifiers of businesses this device trusts, `NAME=HEX` (the verifier's Ed25519 public
    /// key, 64 hex digits; spec/business.md 4.2), added with `sealpost business trust`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_verifiers: Vec<String>,
}

impl Settings {
    /// The account, parsed.
    pub fn account_id(&self) -> anyhow::Result<AccountId> {
        parse_account(&self.account)
    }

    /// The client configuration: resolves the relay address and parses the pins.
    pub async fn client_config(&self, timeout: Duration) -> anyhow::Result<ClientConfig> {
        if self.fingerprint.is_some() {
            bail!(
                "{CONFIG_FILE} pins the relay's certificate (`fingerprint = ...`), which this version no longer accepts because it breaks at every certificate renewal: replace that line with `relay_pins = [\"sha256/...\"]`, the public-key pin the relay prints at start (or `sealpost-relay --print-pin`), or run `sealpost register --relay-pin sha256/...` again"
            );
        }
        let pins = parse_pins(self.relay_pins.iter().map(String::as_str))?;
        let relays = self
            .relay
            .0
            .iter()
            .map(|r| {
                r.parse::<RelayAddr>()
                    .with_context(|| format!("invalid relay address {r:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let first = self
            .relay
            .0
            .first()
            .ok_or_else(|| anyhow!("no relay address: give --relay HOST:PORT"))?;
        // The default guardian (1-of-1) is the first node; host names are resolved again at
        // every connection attempt.
        let addr = tokio::net::lookup_host(first.as_str())
            .await
            .with_context(|| format!("cannot resolve the relay address {first:?}"))?
            .next()
            .ok_or_else(|| anyhow!("the relay address {first:?} resolves to nothing"))?;
        let mut config = ClientConfig::new(addr, pins).with_relays(relays);
        if !self.guardians.is_empty() {
            let mut list = Vec::with_capacity(self.guardians.len());
            for g in &self.guardians {
                let (addr, fp) = g
                    .split_once('=')
                    .ok_or_else(|| anyhow!("guardian {g:?}: expected HOST:PORT=PIN[,PIN]"))?;
                let sock = tokio::net::lookup_host(addr)
                    .await
                    .with_context(|| format!("cannot resolve the guardian address {addr:?}"))?
                    .next()
                    .ok_or_else(|| anyhow!("the guardian address {addr:?} resolves to nothing"))?;
                list.push(Guardian::new(sock, parse_pins(fp.split(','))?));
            }
            let n = u8::try_from(list.len()).map_err(|_| anyhow!("at most 255 guardians"))?;
            let t = self.guardian_threshold.unwrap_or(n / 2 + 1);
            config = config.with_guardians(Guardians::new(list, t)?);
        }
        for v in &self.trusted_verifiers {
            let (name, key) = parse_verifier(v)?;
            config = config.with_trusted_verifier(name, key);
        }
        Ok(config
            .with_request_timeout(timeout.min(MAX_REQUEST_TIMEOUT))
            // A short-lived program: retry quickly rather than wait up to a minute.
            .with_reconnect(Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
            }))
    }
}

/// A trusted verifier as written in `config.toml`: `NAME=HEX`.
pub fn parse_verifier(entry: &str) -> anyhow::Result<(String, [u8; 32])> {
    let (name, key) = entry
        .rsplit_once('=')
        .ok_or_else(|| anyhow!("trusted verifier {entry:?}: expected NAME=HEX"))?;
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        bail!("trusted verifier {entry:?}: the name must be one line of text");
    }
    Ok((name.to_owned(), parse_key_hex(key)?))
}

/// 64 hex digits as a 32-byte public key.
pub fn parse_key_hex(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).map_err(|_| anyhow!("{text:?} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("a public key is 64 hex digits (32 bytes)"))
}

/// The relay's addresses as written in `config.toml`: one string, or a list of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relays(pub Vec<String>);

impl Relays {
    /// Whether no address is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl Serialize for Relays {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Relays {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(one) => Self(vec![one]),
            OneOrMany::Many(many) => Self(many),
        })
    }
}

/// An account id as users type it: `+` and 8 to 15 digits.
pub fn parse_account(s: &str) -> anyhow::Result<AccountId> {
    let s = s.trim();
    let digits = s.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        bail!("invalid account {s:?}: expected a phone number like +15551234567");
    }
    AccountId::new(s).with_context(|| format!("invalid account {s:?}"))
}

/// A list of public-key pins, `sha256/<base64>` each (spec/relay.md section 1.1).
pub fn parse_pins<'a>(items: impl IntoIterator<Item = &'a str>) -> anyhow::Result<SpkiPins> {
    SpkiPins::parse(items).map_err(|e| match e {
        SpkiPinError::Empty => {
            anyhow!("no relay pin: give --relay-pin sha256/... (the relay prints it at start)")
        }
        e => anyhow!("invalid relay pin: {e}"),
    })
}

/// A 6-digit verification code.
pub fn parse_code(s: &str) -> anyhow::Result<String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("a verification code is six digits");
    }
    Ok(s)
}

/// The data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// The directory at `path` (not created until something is saved).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// The store's path.
    pub fn store_path(&self) -> PathBuf {
        self.path.join(STORE_FILE)
    }

    /// The saved settings, if any.
    pub fn try_load(&self) -> anyhow::Result<Option<Settings>> {
        let path = self.config_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let settings =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
        Ok(Some(settings))
    }

    /// The saved settings of a registered device.
    pub fn load_registered(&self) -> anyhow::Result<Settings> {
        match self.try_load()? {
            Some(s) if s.device.is_some() && self.store_path().exists() => Ok(s),
            Some(s) => bail!(
                "{} is not registered yet in {}: finish with `sealpost register --code NNNNNN`",
                s.account,
                self.path.display()
            ),
            None => bail!(
                "no Sealpost account in {}: run `sealpost register` first (or pass --data-dir)",
                self.path.display()
            ),
        }
    }

    /// Writes the settings (creating the directory, owner-only on Unix), atomically.
    pub fn save(&self, settings: &Settings) -> anyhow::Result<()> {
        self.create()?;
        let path = self.config_path();
        let text = toml::to_string(settings).context("encoding the configuration")?;
        let tmp = self.path.join(format!("{CONFIG_FILE}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    fn create(&self) -> anyhow::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(&self.path)
            .with_context(|| format!("cannot create the data directory {}", self.path.display()))
    }

    /// Opens the store (creating it when `create`), with the passphrase from the
    /// environment or the terminal. Argon2id makes this take a moment.
    pub async fn open_store(&self, create: bool) -> anyhow::Result<Store> {
        let path = self.store_path();
        let exists = path.exists();
        if !exists && !create {
            bail!(
                "no store in {}: run `sealpost register` first (or pass --data-dir)",
                self.path.display()
            );
        }
        if !exists {
            self.create()?;
        }
        // The lock first: a store in use is reported at once, before asking for the
        // passphrase and deriving the key.
        let lock_path = path.clone();
        let backend = tokio::task::spawn_blocking(move || SqliteClientStore::open(&lock_path))
            .await
            .context("opening the store")?
            .map_err(|e| store_error(e, &path))?;
        let passphrase = passphrase(!exists)?;
        let step = Step::start(if exists {
            "Unlocking the store"
        } else {
            "Creating the encrypted store"
        });
        // Argon2id runs on a blocking thread inside `Store::open`.
        let store = Store::open(backend, StoreSecret::passphrase(passphrase.as_str()))
            .await
            .map_err(|e| store_error(e, &path))?;
        step.clear();
        Ok(store)
    }
}

/// A user-facing error for a store that does not open.
fn store_error(e: StoreError, path: &Path) -> anyhow::Error {
    match e {
        StoreError::InUse { .. } => anyhow!(
            "another sealpost process is using the store at {} (close it first, e.g. a running `sealpost chat`)",
            path.display()
        ),
        StoreError::WrongKey => anyhow!(
            "wrong passphrase for the store {} (set {PASSPHRASE_ENV} or type it when asked)",
            path.display()
        ),
        e => anyhow!(e).context(format!("cannot open the store {}", path.display())),
    }
}

/// Asks for a secret on the terminal without echo (twice when `confirm`); fails when stdin
/// or stderr is not a terminal, telling the user about `env`.
fn ask_secret(
    what: &str,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<String>> {
    let term = console::Term::stderr();
    if !term.is_term() || !std::io::stdin().is_terminal() {
        bail!("no {what}: set {env} or run sealpost in a terminal");
    }
    let ask = |prompt: &str| -> anyhow::Result<Zeroizing<String>> {
        eprint!("{prompt}");
        term.read_secure_line()
            .map(Zeroizing::new)
            .with_context(|| format!("reading the {what}"))
    };
    let first = ask(prompt)?;
    if confirm && *ask(&format!("Repeat the {what}: "))? != *first {
        bail!("the {what}s differ");
    }
    Ok(first)
}

/// The two-step verification PIN: `SEALPOST_PIN`, or asked on the terminal without echo
/// (twice when `confirm`).
pub fn read_pin(prompt: &str, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = std::env::var_os(PIN_ENV) {
        return p
            .into_string()
            .map(Zeroizing::new)
            .map_err(|_| anyhow!("{PIN_ENV} is not valid UTF-8"));
    }
    ask_secret("PIN", PIN_ENV, prompt, confirm)
}

/// The store passphrase: `SEALPOST_PASSPHRASE`, or asked on the terminal without echo
/// (twice for a new store).
fn passphrase(new_store: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
        let p = Zeroizing::new(
            p.into_string()
                .map_err(|_| anyhow!("{PASSPHRASE_ENV} is not valid UTF-8"))?,
        );
        if p.is_empty() {
            bail!("{PASSPHRASE_ENV} is set but empty");
        }
        return Ok(p);
    }
    let p = ask_secret(
        "passphrase",
        PASSPHRASE_ENV,
        if new_store {
            "New store passphrase: "
        } else {
            "Store passphrase: "
        },
        new_store,
    )?;
    if p.is_empty() {
        bail!("the passphrase must not be empty");
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accounts_pins_codes() {
        assert!(parse_account("+15551234567").is_ok());
        assert!(parse_account(" +4915112345678 ").is_ok());
        for bad in [
            "15551234567",
            "+1555",
            "+1555abc4567",
            "+1234567890123456",
            "",
        ] {
            assert!(parse_account(bad).is_err(), "{bad}");
        }
        let pin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(parse_pins([pin]).unwrap().as_slice().len(), 1);
        // An old certificate fingerprint is refused with an explanation.
        let e = parse_pins([&*"ab".repeat(32)]).unwrap_err().to_string();
        assert!(
            e.contains("certificate fingerprint") && e.contains("--print-pin"),
            "{e}"
        );
        assert!(parse_pins(["abcd"]).is_err());
        assert!(
            parse_pins([])
                .unwrap_err()
                .to_string()
                .contains("--relay-pin")
        );
        assert_eq!(parse_code(" 012 345\n").ok().as_deref(), Some("012345"));
        assert!(parse_code("12345").is_err() && parse_code("12345a").is_err());
    }

    #[test]
    fn settings_roundtrip() {
        let dir = std::env::temp_dir().join(format!("sealpost-cli-test-{}", std::process::id()));
        let d = DataDir::new(dir.clone());
        assert_eq!(d.try_load().ok(), Some(None));
        let s = Settings {
            relay: Relays(vec!["127.0.0.1:4433".into()]),
            relay_pins: vec!["sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()],
            fingerprint: None,
            account: "+15551234567".into(),
            device: Some(1),
            guardians: vec![
                "127.0.0.1:4434=sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
            ],
            guardian_threshold: Some(1),
            trusted_verifiers: vec![format!("Basel Registry={}", "ab".repeat(32))],
        };
        d.save(&s).ok();
        assert_eq!(
            parse_verifier(&s.trusted_verifiers[0]).unwrap(),
            ("Basel Registry".to_owned(), [0xab; 32])
        );
        assert!(parse_verifier("no key").is_err());
        assert!(parse_verifier("x=abcd").is_err());
        assert_eq!(d.try_load().ok(), Some(Some(s.clone())));
        // Several nodes are written as a list; one stays a plain string.
        let two = Settings {
            relay: Relays(vec!["127.0.0.1:4433".into(), "relay.example:4433".into()]),
            ..s
        };
        let text = toml::to_string(&two).unwrap();
        assert!(
            text.contains("relay = [\"127.0.0.1:4433\", \"relay.example:4433\"]"),
            "{text}"
        );
        assert_eq!(toml::from_str::<Settings>(&text).unwrap(), two);
        d.save(&two).ok();
        assert_eq!(d.try_load().ok(), Some(Some(two)));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A config.toml written by a version that pinned the certificate still loads, and using
    /// it explains how to migrate instead of failing on an unknown field.
    #[tokio::test]
    async fn certificate_fingerprint_config_is_explained() {
        let old = format!(
            "relay = \"127.0.0.1:4433\"\nfingerprint = \"{}\"\naccount = \"+15551234567\"\ndevice = 1\n",
            "ab".repeat(32)
        );
        let s: Settings = toml::from_str(&old).unwrap();
        let e = s
            .client_config(Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("relay_pins") && e.contains("--print-pin"), "{e}");
        // Saving never writes the old field back.
        let s = Settings {
            relay_pins: vec!["sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()],
            fingerprint: None,
            ..s
        };
        assert!(!toml::to_string(&s).unwrap().contains("fingerprint"));
    }
}
