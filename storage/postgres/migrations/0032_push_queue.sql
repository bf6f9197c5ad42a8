-- The push delivery queue (see pusher/README.md).
-- PostgreSQL DDL: a plain table keyed by its primary key.
-- Column names and meanings match the other engine's file exactly.

-- One row per (notification, HTTP pusher of its user) still to be delivered
-- to the pusher's push gateway. Rows are written in the same transaction as
-- the notification row (storage.Push.StoreNotifications) and deleted in the
-- step that records the outcome (delivered, refused, given up). attempts
-- counts failed deliveries; enqueued_ts (ms) bounds how long one is tried.
-- A pusher's rows go with it (removed by its user, with its device, or
-- because its gateway rejected the pushkey), as do a notification's.
CREATE TABLE push_queue (
    app_id      TEXT NOT NULL,
    pushkey     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    event_nid   BIGINT NOT NULL,
    enqueued_ts BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, pushkey, user_id, event_nid),
    FOREIGN KEY (app_id, pushkey, user_id) REFERENCES pushers (app_id, pushkey, user_id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, event_nid) REFERENCES push_notifications (user_id, event_nid) ON DELETE CASCADE
);
CREATE INDEX push_queue_notification ON push_queue (user_id, event_nid);
