//! The configuration's tests: layering, checks, and every option by environment and by flag.

use super::options::{GUARDIAN_HEADING, LIMITS_HEADING, WEBHOOK_SECRET_ENV};
use super::*;
use std::collections::HashMap;

/// The program name, `--dev-log-codes` (every relay needs a code sender) and `a`.
fn args(a: &[&str]) -> Vec<OsString> {
    ["sealpost-relay", "--dev-log-codes"]
        .into_iter()
        .chain(a.iter().copied())
        .map(OsString::from)
        .collect()
}

/// The program name and `a`.
fn bare_args(a: &[&str]) -> Vec<OsString> {
    std::iter::once("sealpost-relay")
        .chain(a.iter().copied())
        .map(OsString::from)
        .collect()
}

#[test]
fn a_code_sender_is_required() {
    // Loading succeeds (`--print-pin` needs no sender); starting is refused.
    let c = RelayConfig::load_with_env(bare_args(&[]), |_| None).unwrap();
    assert!(matches!(
        c.check_code_sender(),
        Err(RelayError::Config(ConfigError::NoCodeSender))
    ));
    assert!(matches!(
        RelayConfig::default().check_code_sender(),
        Err(RelayError::Config(ConfigError::NoCodeSender))
    ));
    // The flag, the variable and the file key each enable the development sender.
    let c = RelayConfig::load_with_env(bare_args(&["--dev-log-codes"]), |_| None).unwrap();
    assert!(c.dev_log_codes);
    let c = RelayConfig::load_with_env(bare_args(&[]), |k| {
        (k == "SEALPOST_RELAY_DEV_LOG_CODES").then(|| "true".to_owned())
    })
    .unwrap();
    assert!(c.dev_log_codes);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "dev_log_codes = true\n").unwrap();
    let path = file.display().to_string();
    let c = RelayConfig::load_with_env(bare_args(&["--config", &path]), |_| None).unwrap();
    assert!(c.dev_log_codes);
    // A webhook is a code sender; the development flag is then not needed.
    let c = RelayConfig::load_with_env(
        bare_args(&["--webhook-url", "https://sms.example/send"]),
        |k| (k == "SEALPOST_RELAY_WEBHOOK_SECRET").then(|| "0123456789abcdef".to_owned()),
    )
    .unwrap();
    assert!(!c.dev_log_codes);
    assert!(c.check_code_sender().is_ok());
}

#[test]
fn webhook_is_https_and_signed() {
    let secret =
        |k: &str| (k == "SEALPOST_RELAY_WEBHOOK_SECRET").then(|| "0123456789abcdef".to_owned());
    let config_error = |r: Result<RelayConfig, RelayError>| match r {
        Err(RelayError::Config(e)) => e.to_string(),
        other => panic!("{other:?}"),
    };
    // Plain http only to loopback.
    let m = config_error(RelayConfig::load_with_env(
        bare_args(&["--webhook-url", "http://sms.example/send"]),
        secret,
    ));
    assert!(m.contains("https://"), "{m}");
    let c = RelayConfig::load_with_env(
        bare_args(&["--webhook-url", "http://127.0.0.1:8080/sms"]),
        secret,
    )
    .unwrap();
    assert_eq!(
        c.load_webhook_secret().unwrap().unwrap().as_slice(),
        b"0123456789abcdef"
    );
    // A secret is required, long enough, and only one of the two sources.
    let m = config_error(RelayConfig::load_with_env(
        bare_args(&["--webhook-url", "https://sms.example/send"]),
        |_| None,
    ));
    assert!(m.contains("webhook_secret"), "{m}");
    let m = config_error(RelayConfig::load_with_env(
        bare_args(&["--webhook-url", "https://sms.example/send"]),
        |k| (k == "SEALPOST_RELAY_WEBHOOK_SECRET").then(|| "short".to_owned()),
    ));
    assert!(m.contains("at least 16"), "{m}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhook.secret");
    std::fs::write(&file, "  from-a-file-0123456789\n").unwrap();
    let path = file.display().to_string();
    let c = RelayConfig::load_with_env(
        bare_args(&[
            "--webhook-url",
            "https://sms.example/send",
            "--webhook-secret-file",
            &path,
        ]),
        |_| None,
    )
    .unwrap();
    assert_eq!(
        c.load_webhook_secret().unwrap().unwrap().as_slice(),
        b"from-a-file-0123456789"
    );
    let m = config_error(RelayConfig::load_with_env(
        bare_args(&[
            "--webhook-url",
            "https://sms.example/send",
            "--webhook-secret-file",
            &path,
        ]),
        secret,
    ));
    assert!(m.contains("not both"), "{m}");
    // The secret is never printed.
    let c = RelayConfig::load_with_env(
        bare_args(&["--webhook-url", "https://sms.example/send"]),
        secret,
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
}

#[test]
fn defaults() {
    let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert!(c.metrics_listen.is_none() && c.cert_path.is_none() && c.webhook_url.is_none());
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn precedence_flags_env_file_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        r#"
listen = "127.0.0.1:1000"
data_dir = "/from/file"
metrics_listen = "127.0.0.1:9000"
webhook_url = "https://file.example/"
webhook_secret = "0123456789abcdef0123"
[limits]
code_requests_per_account = 2
max_connections = 50
"#,
    )
    .unwrap();
    let env: HashMap<&str, String> = [
        ("SEALPOST_RELAY_CONFIG", file.display().to_string()),
        ("SEALPOST_RELAY_LISTEN", "127.0.0.1:2000".to_owned()),
        ("SEALPOST_RELAY_DATA_DIR", "/from/env".to_owned()),
    ]
    .into_iter()
    .collect();
    let c = RelayConfig::load_with_env(args(&["--listen", "127.0.0.1:3000"]), |k| {
        env.get(k).cloned()
    })
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:3000"); // flag
    assert_eq!(c.data_dir, PathBuf::from("/from/env")); // env over file
    assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9000"); // file
    assert_eq!(c.webhook_url.as_deref(), Some("https://file.example/"));
    assert_eq!(c.limits.code_requests_per_account, 2);
    assert_eq!(c.limits.max_connections, 50);
    assert_eq!(c.limits.sends_per_second, 50); // default inside [limits]
}

#[test]
fn reset_key_file_from_file_env_and_flag() {
    assert_eq!(
        RelayConfig::load_with_env(args(&[]), |_| None)
            .unwrap()
            .reset_key_file,
        None
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "reset_key_file = \"/from/file.key\"\n").unwrap();
    let path = file.display().to_string();
    let from_file = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
    assert_eq!(
        from_file.reset_key_file,
        Some(PathBuf::from("/from/file.key"))
    );
    let env = |k: &str| (k == "SEALPOST_RELAY_RESET_KEY_FILE").then(|| "/from/env.key".into());
    let from_env = RelayConfig::load_with_env(args(&["--config", &path]), env).unwrap();
    assert_eq!(
        from_env.reset_key_file,
        Some(PathBuf::from("/from/env.key"))
    );
    let from_flag = RelayConfig::load_with_env(
        args(&["--config", &path, "--reset-key-file", "/from/flag.key"]),
        env,
    )
    .unwrap();
    assert_eq!(
        from_flag.reset_key_file,
        Some(PathBuf::from("/from/flag.key"))
    );
}

#[test]
fn guardian_from_file_env_and_flags() {
    let k1 = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let k2 = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
    assert_eq!(c.guardian, GuardianConfig::default());
    assert!(c.guardian.enabled);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
            &file,
            format!(
                "[guardian]\nmax_attempts = 5\naccounts = [\"+1555\"]\ntrusted_issuers = [\"{k1}\"]\nmax_vaults = 7\n"
            ),
        )
        .unwrap();
    let path = file.display().to_string();
    let c = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
    assert_eq!(
        c.guardian,
        GuardianConfig {
            enabled: true,
            max_attempts: 5,
            accounts: vec!["+1555".into()],
            trusted_issuers: vec![k1.into()],
            max_vaults: 7,
        }
    );
    let env: HashMap<&str, String> = [
        ("SEALPOST_RELAY_GUARDIAN", "false".to_owned()),
        ("SEALPOST_RELAY_GUARDIAN_MAX_ATTEMPTS", "20".to_owned()),
    ]
    .into_iter()
    .collect();
    let c =
        RelayConfig::load_with_env(args(&["--config", &path]), |k| env.get(k).cloned()).unwrap();
    assert!(!c.guardian.enabled);
    assert_eq!(c.guardian.max_attempts, 20);
    let c = RelayConfig::load_with_env(
        args(&[
            "--config",
            &path,
            "--guardian",
            "--guardian-max-attempts",
            "3",
            "--guardian-trusted-issuer",
            k1,
            "--guardian-trusted-issuer",
            k2,
            "--guardian-accounts",
            "+1,+44",
        ]),
        |k| env.get(k).cloned(),
    )
    .unwrap();
    assert!(c.guardian.enabled);
    assert_eq!(c.guardian.max_attempts, 3);
    assert_eq!(
        c.guardian.trusted_issuers,
        vec![k1.to_owned(), k2.to_owned()]
    );
    assert_eq!(c.guardian.accounts, vec!["+1".to_owned(), "+44".to_owned()]);
    let c = RelayConfig::load_with_env(args(&["--no-guardian"]), |_| None).unwrap();
    assert!(!c.guardian.enabled);
    // Clear errors for bad values.
    for bad in [
        &["--guardian-max-attempts", "0"][..],
        &["--guardian-max-attempts", "101"],
        &["--guardian-trusted-issuer", "abcd"],
        &["--guardian-accounts", "1555"],
    ] {
        match RelayConfig::load_with_env(args(bad), |_| None) {
            Err(RelayError::Config(e)) => assert!(e.to_string().contains("guardian."), "{e}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    std::fs::write(&file, "[guardian]\nunknown = 1\n").unwrap();
    assert!(RelayConfig::load_with_env(args(&["--config", &path]), |_| None).is_err());
}

#[test]
fn store_from_file_env_and_flags() {
    let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
    assert_eq!(c.store, StoreBackend::Sqlite);
    assert!(c.validate().is_ok());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        "store = \"postgres://relay:s3cret@db.internal/file\"\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let postgres = |url: &str| StoreBackend::Postgres(Zeroizing::new(url.to_owned()));
    let c = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
    assert_eq!(
        c.store,
        postgres("postgres://relay:s3cret@db.internal/file")
    );
    // The password is never printed.
    assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
    // Environment over file, flag over environment; `sqlite` selects the default back.
    let env = |k: &str| {
        (k == "SEALPOST_RELAY_STORE").then(|| "postgresql://relay@127.0.0.1/env".to_owned())
    };
    let c = RelayConfig::load_with_env(args(&["--config", &path]), env).unwrap();
    assert_eq!(c.store, postgres("postgresql://relay@127.0.0.1/env"));
    let c =
        RelayConfig::load_with_env(args(&["--config", &path, "--store", "sqlite"]), env).unwrap();
    assert_eq!(c.store, StoreBackend::Sqlite);
    let c = RelayConfig::load_with_env(args(&["--store", "postgres://h/flag"]), env).unwrap();
    assert_eq!(c.store, postgres("postgres://h/flag"));
    assert!(c.validate().is_ok());
    // Anything else is refused, from every source.
    assert!(RelayConfig::load_with_env(args(&["--store", "mysql://x"]), |_| None).is_err());
    let bad_env = |k: &str| (k == "SEALPOST_RELAY_STORE").then(|| "redis://x".to_owned());
    assert!(matches!(
        RelayConfig::load_with_env(args(&[]), bad_env),
        Err(RelayError::Config(ConfigError::Env { var, .. })) if var == "SEALPOST_RELAY_STORE"
    ));
    std::fs::write(&file, "store = \"/var/lib/relay.db\"\n").unwrap();
    assert!(matches!(
        RelayConfig::load_with_env(args(&["--config", &path]), |_| None),
        Err(RelayError::Config(e)) if e.to_string().contains("postgres://")
    ));
}

#[test]
fn nats_from_file_env_and_flags_and_not_in_debug() {
    let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
    assert_eq!(c.nats, None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "nats = \"nats://relay:s3cret@bus.internal:4222\"\n").unwrap();
    let path = file.to_str().unwrap().to_owned();
    let c = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
    let url = c.nats.as_ref().unwrap();
    assert_eq!(url.expose(), "nats://relay:s3cret@bus.internal:4222");
    assert!(!format!("{c:?}").contains("s3cret"));
    assert!(!format!("{url:?}").contains("s3cret"));
    let env = |k: &str| (k == "SEALPOST_RELAY_NATS").then(|| "nats://127.0.0.1:4333".to_owned());
    let c = RelayConfig::load_with_env(args(&["--config", &path]), env).unwrap();
    assert_eq!(c.nats.unwrap().expose(), "nats://127.0.0.1:4333");
    let c = RelayConfig::load_with_env(args(&["--nats", "nats://flag:4222"]), env).unwrap();
    assert_eq!(c.nats.unwrap().expose(), "nats://flag:4222");
    assert!(RelayConfig::load_with_env(args(&["--nats", "http://x"]), |_| None).is_err());
    assert!(RelayConfig::load_with_env(args(&["--nats", "nats://"]), |_| None).is_err());
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(RelayConfig::load_with_env(args(&["--cert", "a.pem"]), |_| None).is_err());
    assert!(RelayConfig::load_with_env(args(&["--bogus"]), |_| None).is_err());
    assert!(
        RelayConfig::load_with_env(args(&[]), |k| {
            (k == "SEALPOST_RELAY_LISTEN").then(|| "nope".to_owned())
        })
        .is_err()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "[limits]\nmax_queued_per_device = 20000\n").unwrap();
    let path = file.display().to_string();
    assert!(RelayConfig::load_with_env(args(&["--config", &path]), |_| None).is_err());
    std::fs::write(&file, "unknown_key = 1\n").unwrap();
    assert!(RelayConfig::load_with_env(args(&["--config", &path]), |_| None).is_err());
}

/// A value other than the default for the option with clap id `id`, as given to its flag
/// or variable, and as `--print-config` prints it. `None` for an option without one: the
/// test below then fails, so a new option cannot be left out.
fn test_value(id: &str) -> Option<(&'static str, toml::Value)> {
    use toml::Value;
    let s = |v: &'static str| Value::String(v.to_owned());
    let list =
        |v: &[&str]| Value::Array(v.iter().map(|x| Value::String((*x).to_owned())).collect());
    let k1 = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let k2 = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    Some(match id {
        "listen" => ("127.0.0.1:4999", s("127.0.0.1:4999")),
        "data_dir" => ("/srv/relay-data", s("/srv/relay-data")),
        "store" => (
            "postgres://relay:s3cret@db.internal/sealpost",
            s("postgres://relay:REDACTED@db.internal/sealpost"),
        ),
        "nats" => (
            "nats://t0ken@bus.internal:4222",
            s("nats://REDACTED@bus.internal:4222"),
        ),
        "metrics_listen" => ("127.0.0.1:9999", s("127.0.0.1:9999")),
        "cert" => ("/etc/sealpost/cert.pem", s("/etc/sealpost/cert.pem")),
        "key" => ("/etc/sealpost/key.pem", s("/etc/sealpost/key.pem")),
        "cert_names" => ("a.example,b.example", list(&["a.example", "b.example"])),
        "reset_key_file" => ("/etc/sealpost/reset.key", s("/etc/sealpost/reset.key")),
        "webhook_url" => ("https://sms.example/send", s("https://sms.example/send")),
        "webhook_secret_file" => (
            "/etc/sealpost/webhook.secret",
            s("/etc/sealpost/webhook.secret"),
        ),
        "webhook_timeout_secs" => ("17", Value::Integer(17)),
        "dev_log_codes" => ("true", Value::Boolean(true)),
        "sweep_interval_secs" => ("61", Value::Integer(61)),
        "shutdown_grace_secs" => ("11", Value::Integer(11)),
        "code_requests_per_account" => ("2", Value::Integer(2)),
        "code_requests_per_source_per_hour" => ("29", Value::Integer(29)),
        "code_requests_per_country_per_hour" => ("299", Value::Integer(299)),
        "code_requests_per_hour" => ("2999", Value::Integer(2999)),
        "code_requests_per_connection" => ("4", Value::Integer(4)),
        "provisioning_opens_per_connection" => ("6", Value::Integer(6)),
        "auth_failures_per_connection" => ("3", Value::Integer(3)),
        "bundle_fetches_per_minute" => ("59", Value::Integer(59)),
        "device_cap_consumer" => ("4", Value::Integer(4)),
        "device_cap_business" => ("31", Value::Integer(31)),
        "device_list_publishes_per_hour" => ("19", Value::Integer(19)),
        "links_per_account_per_hour" => ("9", Value::Integer(9)),
        "bundle_fetches_per_pair_burst" => ("1", Value::Integer(1)),
        "bundle_fetch_pair_interval_secs" => ("301", Value::Integer(301)),
        "bundle_fetches_per_target_per_day" => ("499", Value::Integer(499)),
        "sends_per_second" => ("49", Value::Integer(49)),
        "send_burst" => ("199", Value::Integer(199)),
        "max_queued_per_device" => ("9999", Value::Integer(9999)),
        "max_stored_one_time" => ("999", Value::Integer(999)),
        "max_stored_kem" => ("199", Value::Integer(199)),
        "mailbox_ttl_secs" => ("86400", Value::Integer(86400)),
        "max_connections" => ("9999", Value::Integer(9999)),
        "max_connections_per_ip" => ("255", Value::Integer(255)),
        "rate_limiter_max_keys" => ("99999", Value::Integer(99999)),
        "vault_requests_per_account" => ("29", Value::Integer(29)),
        "request_buffer_bytes" => ("67108864", Value::Integer(67_108_864)),
        "request_buffer_per_connection" => ("2097152", Value::Integer(2_097_152)),
        "request_stall_timeout_ms" => ("2999", Value::Integer(2999)),
        "retry_threshold" => ("7", Value::Integer(7)),
        "enabled" => ("false", Value::Boolean(false)),
        "max_attempts" => ("5", Value::Integer(5)),
        "accounts" => ("+1555,+44", list(&["+1555", "+44"])),
        "trusted_issuers" => (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a,\
             3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            list(&[k1, k2]),
        ),
        "max_vaults" => ("7", Value::Integer(7)),
        _ => return None,
    })
}

/// Arguments that are commands or aliases rather than options.
const NOT_OPTIONS: [&str; 5] = ["help", "version", "config", "print_config", "no_guardian"];

/// One option: its file section, key, variable, flag, test value and printed value.
struct Opt {
    section: Option<&'static str>,
    key: String,
    var: String,
    long: String,
    value: &'static str,
    printed: toml::Value,
}

/// Every option, from clap's list of arguments (the one definition).
fn every_option() -> Vec<Opt> {
    let mut all = Vec::new();
    for arg in options::command().get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_OPTIONS.contains(&id) {
            continue;
        }
        let var = arg
            .get_env()
            .and_then(|v| v.to_str())
            .unwrap_or_else(|| panic!("option {id} has no environment variable"));
        assert!(var.starts_with("SEALPOST_RELAY_"), "{var}");
        let long = arg
            .get_long()
            .unwrap_or_else(|| panic!("option {id} has no flag"));
        let section = match arg.get_help_heading() {
            None => None,
            Some(LIMITS_HEADING) => Some("limits"),
            Some(GUARDIAN_HEADING) => Some("guardian"),
            Some(other) => panic!("option {id}: unknown section {other}"),
        };
        let (value, printed) =
            test_value(id).unwrap_or_else(|| panic!("option {id}: add a value to test_value"));
        all.push(Opt {
            section,
            key: id.to_owned(),
            var: var.to_owned(),
            long: long.to_owned(),
            value,
            printed,
        });
    }
    all
}

/// `--print-config`'s text for `args` and `env`.
fn printed(args: &[String], env: &HashMap<String, String>) -> String {
    let argv: Vec<OsString> = ["sealpost-relay", "--print-config"]
        .into_iter()
        .map(OsString::from)
        .chain(args.iter().map(OsString::from))
        .collect();
    match RelayConfig::load_with_env(argv, |k| env.get(k).cloned()) {
        Err(RelayError::Usage { text, exit_code: 0 }) => text,
        other => panic!("{other:?}"),
    }
}

fn lookup<'a>(table: &'a toml::Table, o: &Opt) -> Option<&'a toml::Value> {
    match o.section {
        None => table.get(&o.key),
        Some(section) => table.get(section)?.as_table()?.get(&o.key),
    }
}

/// The issue's test: every option, changed through its environment variable and
/// (separately) through its flag, shows in `--print-config`; every option has a variable,
/// a flag and a file key, because they come from one definition.
#[test]
fn every_option_by_env_and_by_flag() {
    let all = every_option();
    assert!(all.len() >= 44, "{} options", all.len());
    let defaults: toml::Table = printed(&[], &HashMap::new()).parse().unwrap();
    for o in &all {
        assert_ne!(
            lookup(&defaults, o),
            Some(&o.printed),
            "{}: the default",
            o.key
        );
    }
    let env: HashMap<String, String> = all
        .iter()
        .map(|o| (o.var.clone(), o.value.to_owned()))
        .collect();
    let flags: Vec<String> = all
        .iter()
        .map(|o| format!("--{}={}", o.long, o.value))
        .collect();
    for (how, text) in [
        ("environment", printed(&[], &env)),
        ("flags", printed(&flags, &HashMap::new())),
    ] {
        assert!(
            !text.contains("s3cret") && !text.contains("t0ken"),
            "{text}"
        );
        let table: toml::Table = text.parse().unwrap();
        for o in &all {
            assert_eq!(lookup(&table, o), Some(&o.printed), "{} by {how}", o.key);
        }
        // The printed configuration loads as a file and prints the same again.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("printed.toml");
        std::fs::write(&file, &text).unwrap();
        let again = printed(
            &["--config".to_owned(), file.display().to_string()],
            &HashMap::new(),
        );
        assert_eq!(again, text, "by {how}");
    }
}

/// The webhook secret is a file key and a variable, never a flag, and never printed.
#[test]
fn webhook_secret_is_env_or_file_only_and_never_printed() {
    let secret = "0123456789abcdef-secret";
    let url = [
        "--webhook-url".to_owned(),
        "https://sms.example/send".to_owned(),
    ];
    let env: HashMap<String, String> = [(WEBHOOK_SECRET_ENV.to_owned(), secret.to_owned())]
        .into_iter()
        .collect();
    let text = printed(&url, &env);
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("# webhook_secret = \"REDACTED\""), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, format!("webhook_secret = \"{secret}\"\n")).unwrap();
    let from_file = printed(
        &[
            url[0].clone(),
            url[1].clone(),
            "--config".into(),
            file.display().to_string(),
        ],
        &HashMap::new(),
    );
    assert!(!from_file.contains(secret) && from_file.contains("# webhook_secret"));
    assert!(matches!(
        RelayConfig::load_with_env(args(&["--webhook-secret", secret]), |_| None),
        Err(RelayError::Usage { exit_code: 2, .. })
    ));
}

/// `--help` names each option's variable but never a variable's value.
#[test]
fn help_names_variables() {
    let help = options::command().render_long_help().to_string();
    for o in every_option() {
        assert!(help.contains(&o.var), "{} missing from --help", o.var);
    }
    assert!(matches!(
        RelayConfig::load_with_env(bare_args(&["--help"]), |_| None),
        Err(RelayError::Usage { exit_code: 0, text }) if text.contains("SEALPOST_RELAY_MAX_CONNECTIONS")
    ));
}

/// An invalid variable is reported by name, without its value (it may be a password).
#[test]
fn a_bad_variable_is_named_not_echoed() {
    let env = |k: &str| (k == "SEALPOST_RELAY_STORE").then(|| "mysql://u:pw-XYZ@h/db".to_owned());
    match RelayConfig::load_with_env(args(&[]), env) {
        Err(RelayError::Config(e @ ConfigError::Env { .. })) => {
            let text = format!("{e} {e:?}");
            assert!(
                text.contains("SEALPOST_RELAY_STORE") && !text.contains("pw-XYZ"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let env = |k: &str| (k == "SEALPOST_RELAY_SWEEP_INTERVAL_SECS").then(|| "soon".to_owned());
    assert!(matches!(
        RelayConfig::load_with_env(args(&[]), env),
        Err(RelayError::Config(ConfigError::Env { var, .. })) if var == "SEALPOST_RELAY_SWEEP_INTERVAL_SECS"
    ));
}
