-- Server-side search (POST /search, storage/search.go). SQLite DDL: an FTS5
-- index over the searchable text of room events, kept by triggers on
-- events so it is written in the same transaction as the event and costs
-- the roomserver's Go code nothing.
--
-- Contentless (content='') because the text already lives in events.json:
-- the index stores only tokens, keyed by rowid = events.event_nid. A row
-- leaves through FTS5's 'delete' command with the text it was indexed
-- with, which the triggers re-derive from OLD.json (same expression as the
-- insert). Not contentless_delete=1: it doubled the index's cost per
-- stored event (BenchmarkSearchIndexCost), and the old text is always at
-- hand here. Porter stemming over unicode61
-- (diacritics folded) so "vaccinations" finds "vaccinated", like the
-- PostgreSQL file's 'english' configuration.
--
-- Each indexed type has exactly one searchable key (m.room.message →
-- content.body, m.room.name → content.name, m.room.topic →
-- content.topic), so the search's `keys` select by events.type and the
-- index needs no key column. Encrypted events have no plaintext and are
-- not indexed.
CREATE VIRTUAL TABLE event_search USING fts5(
    value,
    content = '',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- The searchable text of an event row, or NULL (json_type 'text' skips a
-- body that is not a string).
CREATE TRIGGER event_search_insert AFTER INSERT ON events
WHEN NEW.redacted_by_nid IS NULL AND NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    INSERT INTO event_search (rowid, value)
    SELECT NEW.event_nid, json_extract(NEW.json, p.path)
    FROM (SELECT CASE NEW.type WHEN 'm.room.message' THEN '$.content.body'
                               WHEN 'm.room.name' THEN '$.content.name'
                               ELSE '$.content.topic' END AS path) p
    WHERE json_type(NEW.json, p.path) = 'text';
END;

-- A redaction rewrites events.json in place and sets redacted_by_nid
-- (storage/rooms.go, flush): the event leaves the index. Any other rewrite
-- of json re-indexes the new text.
CREATE TRIGGER event_search_update AFTER UPDATE OF json, redacted_by_nid ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
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

CREATE TRIGGER event_search_delete AFTER DELETE ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
    SELECT 'delete', OLD.event_nid, json_extract(OLD.json, p.path)
    FROM (SELECT CASE OLD.type WHEN 'm.room.message' THEN '$.content.body'
                               WHEN 'm.room.name' THEN '$.content.name'
                               ELSE '$.content.topic' END AS path) p
    WHERE OLD.redacted_by_nid IS NULL AND json_type(OLD.json, p.path) = 'text';
END;

-- Events stored before this migration.
INSERT INTO event_search (rowid, value)
SELECT e.event_nid, json_extract(e.json, p.path)
FROM events e
JOIN (SELECT 'm.room.message' AS type, '$.content.body' AS path
      UNION ALL SELECT 'm.room.name', '$.content.name'
      UNION ALL SELECT 'm.room.topic', '$.content.topic') p ON p.type = e.type
WHERE e.redacted_by_nid IS NULL AND json_type(e.json, p.path) = 'text';
