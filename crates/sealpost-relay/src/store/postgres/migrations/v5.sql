-- Sealpost relay, PostgreSQL schema version 5 (normative text: spec/relay-store.md section 3.3.4):
-- each account's account-key backup (spec/relay.md 3.13), with the public account key it seals.
CREATE TABLE account_key_backups (
    account      TEXT PRIMARY KEY,
    account_key  BYTEA NOT NULL,
    backup       BYTEA NOT NULL
);
