package postgres

import (
	"strings"

	"myelin/storage"
)

// The search statements are engine-specific because the index is:
// tsvector, to_tsquery and ts_rank exist only on PostgreSQL, over the
// event_search table of migration 0050 (one tsvector per event, GIN
// indexed, 'english' configuration like the DDL).
//
// Each word is a prefix term (word:*) and the words are ANDed (&).
func init() {
	storage.RegisterSearchDialect(storage.Postgres, storage.SearchDialect{
		From:  `event_search s JOIN events e ON e.event_nid = s.event_nid`,
		Match: `s.vector @@ to_tsquery('english', $1)`,
		Rank:  `ts_rank(s.vector, to_tsquery('english', $1))`,
		Query: func(words []string) string {
			terms := make([]string, len(words))
			for i, w := range words {
				terms[i] = w + ":*"
			}
			return strings.Join(terms, " & ")
		},
	})
}
