-- Accounts: users, devices, hashed access/refresh tokens, profiles,
-- registration tokens and user-interactive-auth sessions.
-- SQLite DDL: BOOLEAN has numeric affinity (stored 0/1), BIGINT is INTEGER;
-- the column names and meanings match the PostgreSQL file exactly so the
-- portable SQL in storage/accounts.go runs on both.

CREATE TABLE users (
    localpart     TEXT PRIMARY KEY,
    -- bcrypt hash; '' means no password can ever match (e.g. deactivated).
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    localpart    TEXT NOT NULL REFERENCES users (localpart) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ip TEXT,
    last_seen_ts BIGINT,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (localpart, device_id)
);

-- Refresh tokens, stored as sha256 hex. parent_hash is the refresh token this
-- one replaced: it stays usable until this token or its access token is used
-- (spec: "The old refresh token remains valid until the new access token or
-- refresh token is used").
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    localpart   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    parent_hash TEXT,
    created_ts  BIGINT NOT NULL,
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_hash);
CREATE INDEX refresh_tokens_device ON refresh_tokens (localpart, device_id);

-- Access tokens, stored as sha256 hex. refresh_hash is the refresh token
-- issued together with this access token (NULL: no refresh token).
CREATE TABLE access_tokens (
    token_hash   TEXT PRIMARY KEY,
    localpart    TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    refresh_hash TEXT,
    expires_ts   BIGINT,
    created_ts   BIGINT NOT NULL,
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (localpart, device_id);
CREATE INDEX access_tokens_refresh ON access_tokens (refresh_hash);

-- Profile fields (displayname, avatar_url, m.tz, custom keys), one row per
-- field, value as JSON text.
CREATE TABLE profile_fields (
    localpart TEXT NOT NULL REFERENCES users (localpart) ON DELETE CASCADE,
    field     TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (localpart, field)
);

CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed INTEGER,             -- NULL: unlimited
    pending      INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    expiry_ts    BIGINT,              -- NULL: never expires
    created_ts   BIGINT NOT NULL
);

-- User-interactive auth sessions live in the database, not in memory, so a
-- multi-step flow works when the steps land on different processes sharing
-- one database, and survives a restart.
CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,         -- the operation the session authorises
    localpart  TEXT NOT NULL DEFAULT '',  -- bound user ('' until known)
    completed  TEXT NOT NULL DEFAULT '',  -- completed stages, space separated
    reg_token  TEXT,                  -- registration token held pending
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX uia_sessions_expires ON uia_sessions (expires_ts);
