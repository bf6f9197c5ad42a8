-- Shared notifications (docs/performance.md, pprof findings): most
-- notifications are the default rules' plain ["notify"] for every joined
-- member but the sender, so a message into an N-member room wrote N-1
-- identical rows. Such a notification is now ONE row per event; who it
-- notified follows from the members' join spans.
-- SQLite DDL: WITHOUT ROWID stores each table once, in its primary key.
-- Column names and meanings match the other engine's file exactly.
-- Events are linear per room (no federation yet): a span is an interval
-- of the global event stream, which is only right while no event of a
-- room is accepted out of order.

-- push_shared: event event_nid notified, with plain ["notify"] and no
-- highlight, every LOCAL user joined to room_nid in the state after it
-- (a push_member_spans interval holds event_nid) other than sender, except
-- the users in push_skips for it. thread_id: NULL for the main timeline,
-- else the thread root's event ID (as push_notifications.thread_id).
CREATE TABLE push_shared (
    room_nid  BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    thread_id TEXT,
    sender    TEXT NOT NULL,
    PRIMARY KEY (room_nid, event_nid)
) WITHOUT ROWID;

-- push_skips: a joined user for whom a shared event is NOT a plain
-- notification: their rules said not to notify (a muted room,
-- suppress_notices, ...) or something else (a highlight or tweaks: they
-- then also have their own push_notifications row).
CREATE TABLE push_skips (
    user_id   TEXT NOT NULL,
    room_nid  BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_nid, event_nid)
) WITHOUT ROWID;

-- push_member_spans: the stream intervals [from_nid, to_nid) in which a
-- local user was joined to a room: from_nid is their join event, to_nid
-- the membership event that ended it (NULL: still joined). Written by the
-- notifications consumer with its position.
CREATE TABLE push_member_spans (
    user_id  TEXT NOT NULL,
    room_nid BIGINT NOT NULL,
    from_nid BIGINT NOT NULL,
    to_nid   BIGINT,
    PRIMARY KEY (user_id, room_nid, from_nid)
) WITHOUT ROWID;

-- Backfill: the currently joined local users (a localpart in users; with no
-- federation every member is local), joined since their current
-- membership event. Earlier spans matter only to rows that do not exist
-- yet: every notification before this migration is a push_notifications row.
INSERT INTO push_member_spans (user_id, room_nid, from_nid, to_nid)
SELECT m.user_id, m.room_nid, m.event_nid, NULL FROM room_members m
WHERE m.membership = 'join'
  AND EXISTS (SELECT 1 FROM users u WHERE u.localpart = substr(m.user_id, 2, instr(m.user_id, ':') - 2));

-- push_queue, rebuilt without its foreign key to push_notifications: a
-- delivery of a shared notification has no push_notifications row.
-- A pusher's rows still go with it (ON DELETE CASCADE); nothing deletes
-- notifications, so the dropped cascade removed nothing.
CREATE TABLE push_queue_shared (
    app_id      TEXT NOT NULL,
    pushkey     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    room_nid    BIGINT NOT NULL,
    event_nid   BIGINT NOT NULL,
    enqueued_ts BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, pushkey, user_id, event_nid),
    FOREIGN KEY (app_id, pushkey, user_id) REFERENCES pushers (app_id, pushkey, user_id) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO push_queue_shared (app_id, pushkey, user_id, room_nid, event_nid, enqueued_ts, attempts)
SELECT app_id, pushkey, user_id, room_nid, event_nid, enqueued_ts, attempts FROM push_queue;
DROP TABLE push_queue;
ALTER TABLE push_queue_shared RENAME TO push_queue;
CREATE INDEX push_queue_notification ON push_queue (user_id, room_nid, event_nid);
