-- End-to-end encryption bookkeeping: device, one-time, fallback and
-- cross-signing keys, signatures, and the device-list stream (see
-- e2ee/README.md). SQLite DDL: WITHOUT ROWID stores keyed tables once, in
-- their primary key. Column names and meanings match the PostgreSQL file
-- exactly so the portable SQL in storage/keys*.go runs on both.

-- Stream counters of the E2EE streams. A writer bumps its stream's row
-- inside its own transaction (UPDATE ... RETURNING); the row lock holds
-- every other writer of that stream until the commit, so positions commit
-- in order on both engines and a reader that reads (since, committed
-- position] never misses a row that commits later.
CREATE TABLE e2ee_streams (
    name TEXT PRIMARY KEY,
    pos  BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO e2ee_streams (name, pos) VALUES ('to_device', 0), ('device_lists', 0);

-- Device identity keys, one object per device, as uploaded (canonical
-- JSON, without "unsigned"). fingerprint is the sha256 of the canonical
-- object without signatures: an upload with another fingerprint for the
-- same device is refused, one with the same is a no-op. ed25519 is the
-- device's signing key, kept apart for verifying signatures.
CREATE TABLE device_keys (
    localpart   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    key_json    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    ed25519     TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (localpart, device_id)
) WITHOUT ROWID;

-- Unclaimed one-time keys. batch numbers the upload within the device
-- (claims take the oldest batch first, as the spec asks); a claim deletes
-- the row it returns.
CREATE TABLE one_time_keys (
    localpart TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    batch     BIGINT NOT NULL,
    PRIMARY KEY (localpart, device_id, algorithm, key_id)
) WITHOUT ROWID;
CREATE INDEX one_time_keys_claim ON one_time_keys (localpart, device_id, algorithm, batch);

-- The fallback key per device and algorithm; used is set when a claim had
-- to hand it out, and cleared when a different key replaces it.
CREATE TABLE fallback_keys (
    localpart TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (localpart, device_id, algorithm)
) WITHOUT ROWID;

-- Cross-signing keys: key_type is master, self_signing or user_signing;
-- public_key is the unpadded base64 ed25519 key (also its key ID).
CREATE TABLE cross_signing_keys (
    localpart  TEXT NOT NULL,
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (localpart, key_type)
) WITHOUT ROWID;

-- Signatures uploaded with /keys/signatures/upload, merged into the keys
-- /keys/query returns. target_key_id is a device ID or a cross-signing
-- public key of the local user target_localpart.
CREATE TABLE key_signatures (
    target_localpart TEXT NOT NULL,
    target_key_id    TEXT NOT NULL,
    signer_user_id   TEXT NOT NULL,
    signer_key_id    TEXT NOT NULL,
    signature        TEXT NOT NULL,
    PRIMARY KEY (target_localpart, target_key_id, signer_user_id, signer_key_id)
) WITHOUT ROWID;

-- The device-list stream: one row per local user whose device identity
-- keys or cross-signing keys changed at stream_pos. /sync and /keys/changes
-- read a range of it.
CREATE TABLE device_list_changes (
    stream_pos BIGINT NOT NULL,
    localpart  TEXT NOT NULL,
    PRIMARY KEY (stream_pos, localpart)
) WITHOUT ROWID;
