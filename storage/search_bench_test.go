package storage_test

import (
	"context"
	"fmt"
	"testing"

	"myelin/storage"
	"myelin/storage/storagetest"
)

// eachEngineB is eachEngine for benchmarks: a fresh migrated database per
// engine.
func eachEngineB(b *testing.B, fn func(b *testing.B, db *storage.DB)) {
	for _, engine := range storagetest.Engines {
		b.Run(engine, func(b *testing.B) {
			fn(b, storagetest.OpenMigrated(b, engine, 4))
		})
	}
}

// BenchmarkSearchIndexCost measures what search indexing adds to storing
// events: commits of 8 messages (the shape of the roomserver's group commit
// under concurrent sends) with the index kept as the server keeps it —
// PostgreSQL's triggers inside each commit; on SQLite a Search.CatchUp
// after every 25 commits, about what the 200 ms indexer sees at 1,000
// msg/s — and on a database with no search triggers and no catch-up. Run
// with -count to interleave the two.
func BenchmarkSearchIndexCost(b *testing.B) {
	for _, mode := range []string{"indexed", "unindexed"} {
		b.Run(mode, func(b *testing.B) {
			eachEngineB(b, func(b *testing.B, db *storage.DB) {
				ctx := context.Background()
				search := storage.NewSearch(db)
				if mode == "unindexed" {
					triggers := []string{"event_search_update", "event_search_delete"}
					if !search.Batched() {
						triggers = append(triggers, "event_search_insert")
					}
					for _, tr := range triggers {
						q := "DROP TRIGGER " + tr
						if db.Engine == storage.Postgres {
							q += " ON events"
						}
						if _, err := db.W.ExecContext(ctx, q); err != nil {
							b.Fatal(err)
						}
					}
				}
				rs := storage.NewRooms(db)
				nid := int64(100)
				write := func(first bool) {
					wtx, err := rs.Begin(ctx)
					if err != nil {
						b.Fatal(err)
					}
					var evs []storage.NewEvent
					for range 8 {
						nid++
						evs = append(evs, textEvent(nid, "m.room.message", "@alice:hs", "", fmt.Sprintf("Biscuit's results are back; all normal %d", nid)))
					}
					last := evs[len(evs)-1]
					rw := &storage.RoomWrite{RoomNID: 1, Events: evs,
						Head: storage.RoomHead{StateGroup: 1, Depth: last.Depth, LastEventNID: last.NID, Extremities: []string{last.EventID}}}
					if first {
						rw.NewRoom = &storage.RoomRow{NID: 1, RoomID: "!r1:hs", Version: "10", Creator: "@alice:hs", CreatedTS: 1}
						rw.Groups = []storage.NewStateGroup{{ID: 1}}
					}
					if err := wtx.Apply(rw); err != nil {
						b.Fatal(err)
					}
					if err := wtx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				write(true)
				commits := 0
				for b.Loop() {
					write(false)
					if commits++; mode == "indexed" && commits%25 == 0 {
						if err := search.CatchUp(ctx); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*8), "ns/event")
			})
		})
	}
}
