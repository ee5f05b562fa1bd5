-- Sealpost relay, PostgreSQL schema version 4 (normative text: spec/relay-store.md section 3.3.3):
-- each device's last seen time (spec/relay.md 3.12), Unix ms. Existing devices get 0 ("not
-- recorded"), not the account's last_seen, which is the newest of all its devices.
ALTER TABLE devices ADD COLUMN last_seen BIGINT NOT NULL DEFAULT 0;
