-- Sealpost relay, PostgreSQL schema version 6 (normative text: spec/relay-store.md section 3.3.5):
-- each account's business profile (spec/relay.md 3.14) with the verification statements
-- published with it, and the version of its default route (0: none).
CREATE TABLE business_profiles (
    account          TEXT PRIMARY KEY,
    account_key      BYTEA NOT NULL,
    profile_version  BIGINT NOT NULL,
    profile          BYTEA NOT NULL,
    route_version    BIGINT NOT NULL,
    payload          BYTEA NOT NULL
);
