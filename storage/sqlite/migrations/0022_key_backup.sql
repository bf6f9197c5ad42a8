-- Server-side key backups (room_keys) (see e2ee/README.md).
-- SQLite DDL: WITHOUT ROWID stores keyed tables once, in their primary key.
-- Column names and meanings match the PostgreSQL file exactly.

-- Server-side key backup versions per user. version counts per user and is
-- never reused (a deleted version stays as a tombstone, so deleting it
-- again succeeds and its number is not handed out twice). etag changes
-- whenever the version's keys change.
CREATE TABLE key_backup_versions (
    localpart TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (localpart, version)
) WITHOUT ROWID;

-- Backed-up room keys: one per (version, room, session), the one the spec's
-- preference rules keep (verified, then lowest first_message_index, then
-- lowest forwarded_count). session_data is the encrypted JSON object.
CREATE TABLE key_backup_keys (
    localpart           TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (localpart, version, room_id, session_id)
) WITHOUT ROWID;
