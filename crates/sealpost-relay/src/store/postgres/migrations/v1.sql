-- Sealpost relay, PostgreSQL schema version 1 (normative text: spec/relay-store.md section 3.3).
-- Integers are BIGINT (u32 and u64 values; u64 values above 2^63 - 1 are stored as 2^63 - 1),
-- times are Unix milliseconds, account ids are the E.164 text of the wire.

-- Verification codes: the HMAC of the code, its expiry and the attempts counted so far.
CREATE TABLE codes (
    account     TEXT PRIMARY KEY,
    mac         BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL
);
CREATE INDEX codes_by_expiry ON codes (expires_at);

-- Every account ever registered: the next device id (ids are never reused) and the
-- registration lock (spec/pin.md section 10).
CREATE TABLE accounts (
    account           TEXT PRIMARY KEY,
    next_device_id    BIGINT NOT NULL,
    reglock_verifier  BYTEA,
    reglock_failures  BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL
);

CREATE TABLE devices (
    account         TEXT NOT NULL,
    device_id       BIGINT NOT NULL,
    identity        BYTEA NOT NULL,
    registered_at   BIGINT NOT NULL,
    max_sender_seq  BIGINT NOT NULL,
    PRIMARY KEY (account, device_id)
);

CREATE TABLE signed_prekeys (
    account     TEXT NOT NULL,
    device_id   BIGINT NOT NULL,
    id          BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    public      BYTEA NOT NULL,
    signature   BYTEA NOT NULL,
    PRIMARY KEY (account, device_id)
);

CREATE TABLE one_time_prekeys (
    account    TEXT NOT NULL,
    device_id  BIGINT NOT NULL,
    id         BIGINT NOT NULL,
    public     BYTEA NOT NULL,
    PRIMARY KEY (account, device_id, id)
);

CREATE TABLE kem_prekeys (
    account      TEXT NOT NULL,
    device_id    BIGINT NOT NULL,
    id           BIGINT NOT NULL,
    last_resort  BOOLEAN NOT NULL,
    created_at   BIGINT NOT NULL,
    public       BYTEA NOT NULL,
    signature    BYTEA NOT NULL,
    PRIMARY KEY (account, device_id, id)
);
-- At most one last-resort key per device.
CREATE UNIQUE INDEX kem_prekeys_last_resort ON kem_prekeys (account, device_id) WHERE last_resort;

-- Server ids of queued envelopes: drawn from a sequence, which never hands out a value twice
-- (not even one drawn by a transaction that rolled back).
CREATE SEQUENCE server_ids AS BIGINT MINVALUE 1 NO CYCLE;

-- One row per accepted send: what its envelopes share, stored once however many devices
-- it goes to. `pending` is the number of `deliveries` rows referencing it; the transaction
-- that deletes the last one deletes the message.
CREATE TABLE messages (
    message_ref     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_account  TEXT NOT NULL,
    sender_device   BIGINT NOT NULL,
    message_id      BYTEA NOT NULL,
    accepted_at     BIGINT NOT NULL,
    pending         BIGINT NOT NULL
);
CREATE INDEX messages_by_time ON messages (accepted_at);

-- One row per queued envelope (the mailbox of a device), deleted when acknowledged.
CREATE TABLE deliveries (
    server_id    BIGINT PRIMARY KEY,
    account      TEXT NOT NULL,
    device_id    BIGINT NOT NULL,
    message_ref  BIGINT NOT NULL REFERENCES messages (message_ref),
    envelope     BYTEA NOT NULL
);
CREATE INDEX deliveries_by_device ON deliveries (account, device_id, server_id);
CREATE INDEX deliveries_by_message ON deliveries (message_ref);

-- Guardian vaults (spec/pin.md section 9).
CREATE TABLE vaults (
    account           TEXT PRIMARY KEY,
    vault_id          BYTEA NOT NULL,
    share             BYTEA NOT NULL,
    success_verifier  BYTEA NOT NULL,
    record            BYTEA NOT NULL,
    attempts_used     BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Persisted quotas (spec/relay.md section 7.1): the GCRA's theoretical arrival time.
CREATE TABLE quotas (
    kind     SMALLINT NOT NULL,
    subject  TEXT NOT NULL,
    tat      BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX quotas_by_tat ON quotas (tat);
