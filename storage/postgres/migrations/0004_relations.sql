-- Event relationships (m.relates_to with a rel_type): one row per child
-- event, written by the roomserver's writer in the same transaction as the
-- event and deleted when the child is redacted (a redacted child's
-- relationship is broken; a redacted parent keeps its children). The
-- parent is named by event ID because it may be unknown to this server.
-- event_type and sender are the child's, so aggregations and filters need
-- no join for them; aggregation_key is an m.annotation's key.
-- PostgreSQL DDL: event_nid is the child's stream position (no sequence).
CREATE TABLE event_relations (
    event_nid       BIGINT PRIMARY KEY,
    room_nid        BIGINT NOT NULL,
    target_id       TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    aggregation_key TEXT
);
-- Children of a parent by type, in stream order (/relations, bundles).
CREATE INDEX event_relations_target ON event_relations (target_id, rel_type, event_nid);
-- Threads of a room (/threads).
CREATE INDEX event_relations_room ON event_relations (room_nid, rel_type, target_id);
