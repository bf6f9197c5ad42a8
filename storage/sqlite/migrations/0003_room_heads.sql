-- A room's forward extremities move into its row as a JSON array: the
-- writer rewrites every touched room's head once per batch, and one
-- multi-row UPDATE is far cheaper than a delete and insert per room. The
-- list is never queried relationally. SQLite DDL: json_group_array copies
-- existing rows.
ALTER TABLE rooms ADD COLUMN extremities TEXT NOT NULL DEFAULT '[]';
UPDATE rooms SET extremities = COALESCE(
    (SELECT json_group_array(event_id) FROM room_extremities e WHERE e.room_nid = rooms.room_nid), '[]');
DROP TABLE room_extremities;
