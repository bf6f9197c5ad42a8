-- Search indexing leaves the event's own transaction (storage/search.go,
-- Search.CatchUp). FTS5 writes a new index segment for every transaction
-- that inserts into it, so indexing inside the roomserver's group commits
-- (a few events each) cost ~50 µs per event on the single writer
-- connection, and more pages in every commit; indexing a few hundred
-- events at a time costs ~5 µs each. The index now follows the event log
-- from its own position, as the notifications do, and a search catches it
-- up before it reads.
DROP TRIGGER event_search_insert;

-- event_nid is the event's stream position and the single writer commits
-- positions in order, so "every event up to indexed_nid is indexed" is
-- the whole state of the indexer. Everything stored so far was indexed by
-- the trigger just dropped.
CREATE TABLE event_search_position (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    indexed_nid INTEGER NOT NULL
);
INSERT INTO event_search_position (id, indexed_nid)
SELECT 0, COALESCE(MAX(event_nid), 0) FROM events;

-- A rewrite or delete of an event the indexer has not reached yet leaves
-- the index alone: the indexer will read the row as it is then. (A
-- contentless FTS5 'delete' of a row it never held would corrupt it.) All
-- of this runs on SQLite's one writer connection, so the position read
-- here cannot move under the trigger.
DROP TRIGGER event_search_update;
CREATE TRIGGER event_search_update AFTER UPDATE OF json, redacted_by_nid ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
 AND OLD.event_nid <= (SELECT indexed_nid FROM event_search_position)
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
    SELECT 'delete', OLD.event_nid, json_extract(OLD.json, p.path)
    FROM (SELECT CASE OLD.type WHEN 'm.room.message' THEN '$.content.body'
                               WHEN 'm.room.name' THEN '$.content.name'
                               ELSE '$.content.topic' END AS path) p
    WHERE OLD.redacted_by_nid IS NULL AND json_type(OLD.json, p.path) = 'text';
    INSERT INTO event_search (rowid, value)
    SELECT NEW.event_nid, json_extract(NEW.json, p.path)
    FROM (SELECT CASE NEW.type WHEN 'm.room.message' THEN '$.content.body'
                               WHEN 'm.room.name' THEN '$.content.name'
                               ELSE '$.content.topic' END AS path) p
    WHERE NEW.redacted_by_nid IS NULL AND json_type(NEW.json, p.path) = 'text';
END;

DROP TRIGGER event_search_delete;
CREATE TRIGGER event_search_delete AFTER DELETE ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
 AND OLD.event_nid <= (SELECT indexed_nid FROM event_search_position)
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
    SELECT 'delete', OLD.event_nid, json_extract(OLD.json, p.path)
    FROM (SELECT CASE OLD.type WHEN 'm.room.message' THEN '$.content.body'
                               WHEN 'm.room.name' THEN '$.content.name'
                               ELSE '$.content.topic' END AS path) p
    WHERE OLD.redacted_by_nid IS NULL AND json_type(OLD.json, p.path) = 'text';
END;
