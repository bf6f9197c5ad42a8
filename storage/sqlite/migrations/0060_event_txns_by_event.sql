-- Client transaction IDs keyed by the event they created (docs/performance.md,
-- change 24). Every send writes one row here in the roomserver's group
-- commit; before, the row went into three B-trees (the transaction key, an
-- index by event_nid, an index by created_ts), each a page rewritten in
-- every commit. Now it is two: the rows themselves, keyed by event_nid (the
-- rowid: stream positions only grow, so rows append to the last page), and
-- the unique transaction key. Reading a sender's transaction IDs for
-- unsigned.transaction_id looks events up by event_nid as before; pruning
-- walks rows in event_nid order, which is creation order (storage/events.go,
-- PruneTxns), so the created_ts index has no reader left.
-- Column names and meanings match the other engine's file exactly.
CREATE TABLE event_txns_by_event (
    event_nid  INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    scope      TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
INSERT INTO event_txns_by_event (event_nid, user_id, device_id, room_nid, scope, txn_id, created_ts)
SELECT event_nid, user_id, device_id, room_nid, scope, txn_id, created_ts FROM event_txns;
DROP TABLE event_txns;
ALTER TABLE event_txns_by_event RENAME TO event_txns;
CREATE UNIQUE INDEX event_txns_key ON event_txns (user_id, device_id, room_nid, scope, txn_id);
