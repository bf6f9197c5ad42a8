-- Sync: the client's own data that /sync streams beside the event log
-- (see syncapi/README.md). SQLite DDL: WITHOUT ROWID stores keyed tables
-- once, in their primary key. Column names and meanings match the
-- PostgreSQL file exactly so the portable SQL in storage/sync_*.go,
-- storage/accountdata.go runs on both.
--
-- stream_pos columns are positions in syncapi's streams (account data,
-- receipts, presence): assigned by syncapi's single serialised writer, one
-- higher than the stream's last, and published only after the commit, so a
-- reader that reads (since, published] never misses a row.

-- Filters uploaded with POST /user/{userId}/filter; filter_id counts per
-- user. json is the normalised filter as the client sent it.
CREATE TABLE sync_filters (
    user_id   TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
) WITHOUT ROWID;

-- Account data, global (room_id = '') and per room; the latest content per
-- (user, room, type). Tags (m.tag) and m.fully_read are room account data.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
) WITHOUT ROWID;
CREATE INDEX account_data_user_pos ON account_data (user_id, stream_pos);
CREATE INDEX account_data_pos ON account_data (stream_pos);

-- Receipts: one event per (room, type, user, thread); thread_id '' is the
-- unthreaded receipt. event_pos is the event's stream position (receipts
-- only move forward; unread counts read it).
CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_pos    BIGINT NOT NULL,
    ts           BIGINT NOT NULL,
    stream_pos   BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
) WITHOUT ROWID;
CREATE INDEX receipts_room_pos ON receipts (room_id, stream_pos);
CREATE INDEX receipts_pos ON receipts (stream_pos);

-- Presence: each user's last published state. last_active_ts is the last
-- pro-active action the server recorded with a state change.
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    status_msg     TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_pos     BIGINT NOT NULL
) WITHOUT ROWID;
CREATE INDEX presence_pos ON presence (stream_pos);

-- /timestamp_to_event searches a room's events by origin_server_ts.
CREATE INDEX events_room_ts ON events (room_nid, origin_ts);
