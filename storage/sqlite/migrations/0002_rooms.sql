-- Rooms and events: the roomserver's tables (see roomserver/README.md).
-- SQLite DDL: INTEGER PRIMARY KEY makes the numeric IDs rowid aliases
-- (compact, ordered); WITHOUT ROWID stores keyed tables once, in their
-- primary key. Column names and meanings match the PostgreSQL file exactly
-- so the portable SQL in storage/rooms.go and storage/events.go runs on both.

-- A room this server knows. room_nid is the compact numeric ID the other
-- tables use; room_id is the Matrix ID. state_group, depth and
-- last_event_nid describe the room's current head and are rewritten by the
-- roomserver's writer in the same transaction as the events that move it.
CREATE TABLE rooms (
    room_nid       INTEGER PRIMARY KEY,
    room_id        TEXT NOT NULL UNIQUE,
    room_version   TEXT NOT NULL,
    -- sender of the m.room.create event
    creator        TEXT NOT NULL,
    created_ts     BIGINT NOT NULL,
    -- published room directory: 'public' or 'private'
    visibility     TEXT NOT NULL DEFAULT 'private',
    state_group    BIGINT NOT NULL,
    depth          BIGINT NOT NULL,
    last_event_nid BIGINT NOT NULL
);
CREATE INDEX rooms_visibility ON rooms (visibility) WHERE visibility = 'public';

-- The room's forward extremities: the events new local events cite as
-- prev_events. A linear local room has exactly one.
CREATE TABLE room_extremities (
    room_nid BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_nid, event_id)
) WITHOUT ROWID;

-- Every accepted event, stored once. event_nid is the global stream
-- position: assigned by the single writer in commit order, so every event
-- with a lower position is committed no later than this one. json is the
-- full federation-format PDU (redacted in place once a redaction applies).
-- state_group is the room state after this event; replaces_nid, for a state
-- event, is the event it replaced in that state (the state before it).
CREATE TABLE events (
    event_nid       INTEGER PRIMARY KEY,
    room_nid        BIGINT NOT NULL,
    event_id        TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    state_key       TEXT,
    sender          TEXT NOT NULL,
    depth           BIGINT NOT NULL,
    origin_ts       BIGINT NOT NULL,
    state_group     BIGINT NOT NULL,
    replaces_nid    BIGINT,
    redacted_by_nid BIGINT,
    json            TEXT NOT NULL
);
CREATE INDEX events_room_pos ON events (room_nid, event_nid);
CREATE INDEX events_room_state ON events (room_nid, type, state_key, event_nid) WHERE state_key IS NOT NULL;

-- State groups: a state group is either a full snapshot (prev_group NULL,
-- entries = the whole state) or a delta on prev_group (entries = the keys
-- that changed). delta_depth counts hops to the snapshot, which the writer
-- bounds, so reading any state costs one snapshot plus a bounded chain and
-- no event ever copies the whole state.
CREATE TABLE state_groups (
    group_id    INTEGER PRIMARY KEY,
    room_nid    BIGINT NOT NULL,
    prev_group  BIGINT,
    delta_depth INTEGER NOT NULL
);

CREATE TABLE state_group_entries (
    group_id  BIGINT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid BIGINT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
) WITHOUT ROWID;

-- The current state of each room, materialised for fast reads.
CREATE TABLE current_state (
    room_nid  BIGINT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid BIGINT NOT NULL,
    PRIMARY KEY (room_nid, type, state_key)
) WITHOUT ROWID;

-- Current membership per (room, user), kept beside current_state so "my
-- rooms" is one index range. event_nid is the membership event; forgotten is
-- set by /forget and cleared by the next membership change.
CREATE TABLE room_members (
    room_nid   BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_nid  BIGINT NOT NULL,
    forgotten  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_nid, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_user ON room_members (user_id, membership);

-- Client transaction IDs: (user, device, room, endpoint scope, txn_id) maps
-- to the event the first request created, written in the same transaction
-- as the event so a retry after a restart finds it.
CREATE TABLE event_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    scope      TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_nid  BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_nid, scope, txn_id)
) WITHOUT ROWID;
CREATE INDEX event_txns_event ON event_txns (event_nid);
CREATE INDEX event_txns_created ON event_txns (created_ts);

-- Local room aliases (#alias:server) and who created them.
CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY,
    room_nid   BIGINT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
) WITHOUT ROWID;
CREATE INDEX room_aliases_room ON room_aliases (room_nid);
