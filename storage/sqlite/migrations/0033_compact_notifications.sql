-- Compact notification rows (docs/performance.md, pprof findings): a message
-- into an N-member room writes N-1 of them, so their size is most of the
-- send path's write work and of the database.
-- SQLite DDL: WITHOUT ROWID stores the rows once, in their primary key.
-- Column names and meanings match the other engine's file exactly.
--
-- push_notifications, rebuilt: ONE B-tree keyed (user_id, room_nid,
-- event_nid) and no secondary index. Per-room unread counts read a key
-- range; the /notifications list reads the user's rows and orders them by
-- event_nid. What each row no longer repeats:
--   room_id   -> room_nid (rooms.room_nid);
--   ts        -> dropped: the event's origin_ts (events) is joined when listing;
--   thread_id -> NULL for the main timeline ('main' in receipts and the API),
--                else the thread root's event ID;
--   actions   -> NULL for the common case ["notify"] with no tweaks, else the
--                actions JSON array.
-- Unread counts are still the rows after the user's furthest read receipt.
CREATE TABLE push_notifications_compact (
    user_id   TEXT NOT NULL,
    room_nid  BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    thread_id TEXT,
    highlight INTEGER NOT NULL,
    actions   TEXT,
    PRIMARY KEY (user_id, room_nid, event_nid)
) WITHOUT ROWID;
-- Rows of rooms unknown to rooms (none exist: a notification is of a stored
-- event) could not be keyed and are not carried over.
INSERT INTO push_notifications_compact (user_id, room_nid, event_nid, thread_id, highlight, actions)
SELECT n.user_id, r.room_nid, n.event_nid,
       CASE WHEN n.thread_id = 'main' THEN NULL ELSE n.thread_id END,
       n.highlight,
       CASE WHEN n.actions = '["notify"]' THEN NULL ELSE n.actions END
FROM push_notifications n JOIN rooms r ON r.room_id = n.room_id;

-- push_queue, rebuilt to reference the new key: room_nid added (a queued
-- delivery still goes with its notification and with its pusher).
CREATE TABLE push_queue_compact (
    app_id      TEXT NOT NULL,
    pushkey     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    room_nid    BIGINT NOT NULL,
    event_nid   BIGINT NOT NULL,
    enqueued_ts BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, pushkey, user_id, event_nid),
    FOREIGN KEY (app_id, pushkey, user_id) REFERENCES pushers (app_id, pushkey, user_id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, room_nid, event_nid) REFERENCES push_notifications_compact (user_id, room_nid, event_nid) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO push_queue_compact (app_id, pushkey, user_id, room_nid, event_nid, enqueued_ts, attempts)
SELECT q.app_id, q.pushkey, q.user_id, n.room_nid, q.event_nid, q.enqueued_ts, q.attempts
FROM push_queue q JOIN push_notifications_compact n ON n.user_id = q.user_id AND n.event_nid = q.event_nid;

-- The old queue first: dropping the old notifications would otherwise
-- cascade into it. Renaming a table rewrites the references to it, so the
-- queue's foreign key follows push_notifications_compact to its new name.
DROP TABLE push_queue;
DROP TABLE push_notifications;
ALTER TABLE push_notifications_compact RENAME TO push_notifications;
ALTER TABLE push_queue_compact RENAME TO push_queue;
CREATE INDEX push_queue_notification ON push_queue (user_id, room_nid, event_nid);
