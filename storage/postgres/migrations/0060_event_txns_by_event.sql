-- Client transaction IDs keyed by the event they created (docs/performance.md,
-- change 24). Every send writes one row here in the roomserver's group
-- commit; before, the row went into the table and three B-tree indexes (the
-- transaction key, event_nid, created_ts). Now it is two indexes: the primary
-- key event_nid (stream positions only grow, so entries append to the last
-- page) and the unique transaction key. Reading a sender's transaction IDs
-- for unsigned.transaction_id looks events up by event_nid as before;
-- pruning walks rows in event_nid order, which is creation order
-- (storage/events.go, PruneTxns), so the created_ts index has no reader left.
-- Column names and meanings match the other engine's file exactly.
ALTER TABLE event_txns DROP CONSTRAINT event_txns_pkey;
DROP INDEX event_txns_event;
DROP INDEX event_txns_created;
ALTER TABLE event_txns ADD PRIMARY KEY (event_nid);
CREATE UNIQUE INDEX event_txns_key ON event_txns (user_id, device_id, room_nid, scope, txn_id);
