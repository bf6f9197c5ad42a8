-- Server-side search (POST /search, storage/search.go). PostgreSQL DDL: a
-- tsvector per searchable event in its own table with a GIN index, kept by
-- a trigger on events so it is written in the same transaction as the
-- event and costs the roomserver's Go code nothing. A separate table (not a
-- generated column on events) because only three event types are
-- searchable: the hot events table stays narrow and other events skip the
-- trigger through its WHEN clause.
--
-- The 'english' configuration stems like the SQLite file's porter
-- tokenizer. Each indexed type has exactly one searchable key
-- (m.room.message → content.body, m.room.name → content.name,
-- m.room.topic → content.topic), so the search's `keys` select by
-- events.type. Encrypted events have no plaintext and are not indexed.
CREATE TABLE event_search (
    event_nid BIGINT PRIMARY KEY,
    vector    tsvector NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);

-- The searchable text of an event row, or NULL when the key is absent or
-- not a string. jsonb refuses the escape \u0000, which JSON (and so an
-- event) may hold: it becomes \u0020 first, or the event's insert would
-- fail. (Replacing the six characters also keeps an escaped backslash
-- before "u0000" valid: \\u0000 turns into \\u0020.)
CREATE FUNCTION event_search_text(typ TEXT, js TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(j #> ARRAY['content', k]) = 'string' THEN j #>> ARRAY['content', k] END
    FROM (SELECT replace(js, '\u0000', '\u0020')::jsonb AS j,
                 CASE typ WHEN 'm.room.message' THEN 'body' WHEN 'm.room.name' THEN 'name' ELSE 'topic' END AS k) x
$$;

-- Insert, and a rewrite of json or redacted_by_nid: a redaction
-- (storage/rooms.go, flush) rewrites json in place and sets
-- redacted_by_nid, which takes the event out of the index.
CREATE FUNCTION event_search_index() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    txt TEXT;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM event_search WHERE event_nid = OLD.event_nid;
    END IF;
    IF NEW.redacted_by_nid IS NULL THEN
        txt := event_search_text(NEW.type, NEW.json);
        IF txt IS NOT NULL THEN
            INSERT INTO event_search (event_nid, vector) VALUES (NEW.event_nid, to_tsvector('english', txt));
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION event_search_unindex() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_search WHERE event_nid = OLD.event_nid;
    RETURN NULL;
END;
$$;

CREATE TRIGGER event_search_insert AFTER INSERT ON events FOR EACH ROW
WHEN (NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic'))
EXECUTE FUNCTION event_search_index();

CREATE TRIGGER event_search_update AFTER UPDATE OF json, redacted_by_nid ON events FOR EACH ROW
WHEN (OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic'))
EXECUTE FUNCTION event_search_index();

CREATE TRIGGER event_search_delete AFTER DELETE ON events FOR EACH ROW
WHEN (OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic'))
EXECUTE FUNCTION event_search_unindex();

-- Events stored before this migration.
INSERT INTO event_search (event_nid, vector)
SELECT event_nid, to_tsvector('english', t)
FROM (SELECT event_nid, event_search_text(type, json) AS t FROM events
      WHERE redacted_by_nid IS NULL AND type IN ('m.room.message', 'm.room.name', 'm.room.topic')) x
WHERE t IS NOT NULL;
