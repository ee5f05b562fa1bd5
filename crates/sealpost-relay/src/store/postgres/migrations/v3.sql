-- Sealpost relay, PostgreSQL schema version 3 (normative text: spec/relay-store.md section 3.3.2):
-- linked devices (spec/relay.md 3.9). Each account's stored device list: the SignedDeviceList
-- encoding, served byte for byte, and the values the next list is checked against.
CREATE TABLE device_lists (
    account         TEXT PRIMARY KEY,
    account_key     BYTEA NOT NULL,
    list_version    BIGINT NOT NULL,
    next_device_id  BIGINT NOT NULL,
    list            BYTEA NOT NULL,
    updated_at      BIGINT NOT NULL
);
