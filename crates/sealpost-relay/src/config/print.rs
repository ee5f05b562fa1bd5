//! `--print-config`: the effective configuration as a TOML configuration file, with secrets
//! redacted.
//!
//! What is redacted: the password of a URL's user information (`postgres://relay:REDACTED@db`)
//! or, for the NATS and webhook URLs, user information without a password (a token); the
//! values of a URL's query (`?password=REDACTED`); and `webhook_secret`, which is printed
//! only as a comment. Paths of key files are printed (they are not secret; their contents
//! are never read here).

use super::options::{Options, WEBHOOK_SECRET_ENV};
use super::{NatsUrl, RelayConfig, StoreBackend};
use crate::ConfigError;
use crate::error::Cause;
use serde::Serializer;

/// What replaces a secret in printed URLs.
pub const REDACTED: &str = "REDACTED";

impl RelayConfig {
    /// The configuration as a TOML configuration file, as `sealpost-relay --print-config`
    /// prints it: every setting, defaults included, with secrets redacted (passwords and
    /// tokens in URLs become `REDACTED`; `webhook_secret` appears only as a comment). Loaded
    /// again it gives the same configuration, except for the redacted secrets, which must
    /// then come from the environment or be filled in.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let unprintable = |e: toml::ser::Error| ConfigError::Unprintable {
            source: Cause::new(e),
        };
        let mut out = String::from(
            "# The effective configuration of sealpost-relay (--print-config); secrets redacted.\n",
        );
        out.push_str(&toml::to_string(&Options::effective(self)).map_err(unprintable)?);
        if self.webhook_secret.is_some() {
            out.push_str(&format!(
                "# webhook_secret = \"{REDACTED}\"  (set: give it again in the file or \
                 {WEBHOOK_SECRET_ENV})\n"
            ));
        }
        out.push_str("\n[limits]\n");
        out.push_str(&toml::to_string(&self.limits).map_err(unprintable)?);
        out.push_str("\n[guardian]\n");
        out.push_str(&toml::to_string(&self.guardian).map_err(unprintable)?);
        Ok(out)
    }
}

/// `url` with its secrets replaced by [`REDACTED`]: the password of its user information
/// (and the whole user information when `userinfo_is_secret`: a NATS token, a webhook key)
/// and every value of its query.
pub(crate) fn redact_url(url: &str, userinfo_is_secret: bool) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None if userinfo_is_secret => format!("{REDACTED}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}={REDACTED}"),
                    None => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

pub(super) fn store<S: Serializer>(v: &Option<StoreBackend>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(StoreBackend::Sqlite) => s.serialize_str("sqlite"),
        Some(StoreBackend::Postgres(url)) => s.serialize_str(&redact_url(url, false)),
        None => s.serialize_none(),
    }
}

pub(super) fn nats<S: Serializer>(v: &Option<NatsUrl>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => s.serialize_str(&redact_url(url.expose(), true)),
        None => s.serialize_none(),
    }
}

pub(super) fn url<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => s.serialize_str(&redact_url(url, true)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_passwords_tokens_and_query_values() {
        for (url, secret_userinfo, printed) in [
            (
                "postgres://relay:pw@db:5432/x",
                false,
                "postgres://relay:REDACTED@db:5432/x",
            ),
            ("postgres://relay@db/x", false, "postgres://relay@db/x"),
            (
                "postgres://db/x?password=pw&sslmode=require",
                false,
                "postgres://db/x?password=REDACTED&sslmode=REDACTED",
            ),
            ("nats://tok@bus:4222", true, "nats://REDACTED@bus:4222"),
            ("nats://u:p@bus:4222", true, "nats://u:REDACTED@bus:4222"),
            ("nats://bus:4222", true, "nats://bus:4222"),
            (
                "https://sms.example/send?key=k",
                true,
                "https://sms.example/send?key=REDACTED",
            ),
            ("not a url", true, "REDACTED"),
        ] {
            assert_eq!(redact_url(url, secret_userinfo), printed, "{url}");
        }
    }
}
