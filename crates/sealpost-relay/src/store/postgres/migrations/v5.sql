-- Sealpost relay, PostgreSQL schema version 5 (normative text: spec/relay-store.md section 3.3.4):
-- each account's account-key backup (spec/relay.md 3.13), with the public account key it seals.
CREATE TABLE account_key_backups (
    account      TEXT PRIMARY KEY,
    account_key  BYTEA NOT NULL,
    backup       BYTEA NOT NULL
);
-- The device a recovery registration added (spec/relay.md 3.2), until the next list is stored.
ALTER TABLE accounts ADD COLUMN rekey_device BIGINT;
