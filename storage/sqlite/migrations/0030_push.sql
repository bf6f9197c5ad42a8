-- Push rules, notifications and pushers (see notifications/README.md).
-- SQLite DDL: WITHOUT ROWID stores keyed tables once, in their primary key.
-- Column names and meanings match the other engine's file exactly.

-- A user's changes to their push rules: their own rules and their changes
-- to server-default rules, as pushrules.UserRules JSON. No row: defaults.
CREATE TABLE push_rules (
    user_id TEXT PRIMARY KEY,
    rules   TEXT NOT NULL
) WITHOUT ROWID;

-- One row per event that notified a local user (a push rule with the
-- notify action matched). thread_id is the thread root's event ID or
-- 'main' for the main timeline, matching threaded receipts' thread IDs.
-- Unread counts are the rows after the user's furthest read receipt
-- (receipts.event_pos), so a receipt resets them with no write here.
CREATE TABLE push_notifications (
    user_id   TEXT NOT NULL,
    event_nid BIGINT NOT NULL,
    room_id   TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight INTEGER NOT NULL,
    actions   TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_nid)
) WITHOUT ROWID;
CREATE INDEX push_notifications_room ON push_notifications (user_id, room_id, event_nid);

-- Durable positions of event-log consumers: the last event position whose
-- effects are committed (advanced in the same transaction as them).
CREATE TABLE consumer_positions (
    name TEXT PRIMARY KEY,
    pos  BIGINT NOT NULL
) WITHOUT ROWID;

-- Pushers registered with /pushers/set; delivery is a later component.
-- data is the pusher's data object as JSON.
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    created_ts          BIGINT NOT NULL,
    PRIMARY KEY (app_id, pushkey, user_id)
) WITHOUT ROWID;
CREATE INDEX pushers_user ON pushers (user_id);
