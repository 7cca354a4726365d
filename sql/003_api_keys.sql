-- 003: API keys for the dashboard REST API.
--
-- A key is "ofk_<id>_<secret>": id is 16 random hex digits and the primary
-- key here; the secret is never stored, only the SHA-256 of the whole key,
-- which the daemon compares in constant time. Keys are made, revoked and
-- listed with orderflowd --create-api-key / --revoke-api-key /
-- --list-api-keys; a revoked key stays (revoked_at set) so the list shows
-- its history. A creator's keys go with the creator.

CREATE TABLE api_keys (
    id           text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    creator_id   uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    -- No control characters, so the tab-separated list stays one line per key.
    name         text        NOT NULL CHECK (char_length(name) <= 100 AND name !~ '[[:cntrl:]]'),
    key_hash     bytea       NOT NULL CHECK (length(key_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    -- Written at most once a minute per key, when a worker looks the key up.
    last_used_at timestamptz
);
COMMENT ON TABLE api_keys IS 'Dashboard API keys: SHA-256 of the key, owner creator, revocation; the key itself is never stored.';

CREATE INDEX api_keys_creator_id_idx ON api_keys (creator_id);
