-- Version 2: provisioning ids for linking devices (spec/relay.md 3.11): the id, its expiry
-- (Unix ms) and the one envelope left for it.
CREATE TABLE provisioning (
    id          BYTEA PRIMARY KEY,
    expires_at  BIGINT NOT NULL,
    envelope    BYTEA
);
CREATE INDEX provisioning_by_expiry ON provisioning (expires_at);
