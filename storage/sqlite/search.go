package sqlite

import (
	"strings"

	"myelin/storage"
)

// The search statements are engine-specific because the index is: FTS5's
// MATCH operator and bm25() exist only on SQLite, over the contentless
// event_search table of migration 0050 (rowid = events.event_nid).
//
// bm25() is lower for better matches, so the rank is its negation. Each
// word is a quoted prefix term ("word"*) and the words are ANDed (FTS5's
// implicit operator); porter stemming applies to the prefixes too.
func init() {
	storage.RegisterSearchDialect(storage.SQLite, storage.SearchDialect{
		From:  `event_search JOIN events e ON e.event_nid = event_search.rowid`,
		Match: `event_search MATCH $1`,
		Rank:  `-bm25(event_search)`,
		Query: func(words []string) string {
			terms := make([]string, len(words))
			for i, w := range words {
				terms[i] = `"` + w + `"*`
			}
			return strings.Join(terms, " ")
		},
		// The text of each searchable event in ($1, $2] (migration 0051);
		// json_type 'text' skips a body that is not a string, and a
		// redacted event has nothing left to index.
		Index: `INSERT INTO event_search (rowid, value)
			SELECT e.event_nid, json_extract(e.json, e.path)
			FROM (SELECT event_nid, json,
			             CASE type WHEN 'm.room.message' THEN '$.content.body'
			                       WHEN 'm.room.name' THEN '$.content.name'
			                       ELSE '$.content.topic' END AS path
			      FROM events
			      WHERE event_nid > $1 AND event_nid <= $2 AND redacted_by_nid IS NULL
			        AND type IN ('m.room.message', 'm.room.name', 'm.room.topic')) e
			WHERE json_type(e.json, e.path) = 'text'`,
	})
}
