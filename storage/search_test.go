package storage_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"myelin/storage"
)

func textEvent(nid int64, typ, sender, key, text string) storage.NewEvent {
	var stateKey *string
	field := "body"
	switch typ {
	case "m.room.name":
		stateKey, field = sk(""), "name"
	case "m.room.topic":
		stateKey, field = sk(""), "topic"
	}
	return storage.NewEvent{NID: nid, EventID: fmt.Sprintf("$ev%d", nid), Type: typ, StateKey: stateKey, Sender: sender,
		Depth: nid, OriginTS: 1000 + nid, StateGroup: 1,
		JSON: []byte(fmt.Sprintf(`{"type":%q,"content":{%q:%q%s}}`, typ, field, text, key))}
}

// searchFixture: room 1 (!r1) with alice and bob, where bob leaves at 7;
// room 2 (!r2) with alice only.
func searchFixture(t *testing.T, rs *storage.Rooms) {
	t.Helper()
	room := func(nid int64, id string, evs ...storage.NewEvent) *storage.RoomWrite {
		last := evs[len(evs)-1]
		return &storage.RoomWrite{
			RoomNID: nid,
			NewRoom: &storage.RoomRow{NID: nid, RoomID: id, Version: "10", Creator: "@alice:hs", CreatedTS: 1000},
			Groups:  []storage.NewStateGroup{{ID: nid, Entries: []storage.StateEntry{{Type: "m.room.create", StateKey: "", EventNID: evs[0].NID}}}},
			Events:  evs,
			Head:    storage.RoomHead{StateGroup: nid, Depth: last.Depth, LastEventNID: last.NID, Extremities: []string{last.EventID}},
		}
	}
	create := func(nid int64) storage.NewEvent {
		return storage.NewEvent{NID: nid, EventID: fmt.Sprintf("$ev%d", nid), Type: "m.room.create", StateKey: sk(""),
			Sender: "@alice:hs", Depth: nid, OriginTS: 1000, StateGroup: 1, JSON: []byte(`{"type":"m.room.create","content":{}}`)}
	}
	applyBatch(t, rs,
		room(1, "!r1:hs",
			create(1),
			memberEvent(2, "@alice:hs", "join", 1, 0),
			memberEvent(3, "@bob:hs", "join", 1, 0),
			textEvent(4, "m.room.message", "@alice:hs", "", "The dog has fleas"),
			textEvent(5, "m.room.message", "@bob:hs", "", "dog, dog and dog: vaccination due"),
			textEvent(6, "m.room.topic", "@alice:hs", "", "Dog grooming"),
			memberEvent(7, "@bob:hs", "leave", 1, 3),
			textEvent(8, "m.room.message", "@alice:hs", "", "a dog after bob left"),
			textEvent(9, "m.room.message", "@alice:hs", `,"url":"mxc://hs/x"`, "cat photo"),
			// Not searchable: encrypted, and a body that is not a string.
			storage.NewEvent{NID: 10, EventID: "$ev10", Type: "m.room.encrypted", Sender: "@alice:hs", Depth: 10, OriginTS: 1010, StateGroup: 1,
				JSON: []byte(`{"type":"m.room.encrypted","content":{"ciphertext":"dog"}}`)},
			storage.NewEvent{NID: 11, EventID: "$ev11", Type: "m.room.message", Sender: "@alice:hs", Depth: 11, OriginTS: 1011, StateGroup: 1,
				JSON: []byte(`{"type":"m.room.message","content":{"body":42}}`)},
		),
		room(2, "!r2:hs",
			create(20),
			memberEvent(21, "@alice:hs", "join", 2, 0),
			textEvent(22, "m.room.message", "@alice:hs", "", "dog in the private room"),
			// NUL escapes (PostgreSQL's jsonb refuses \u0000) and an escaped
			// backslash before one must neither fail the insert nor the index.
			storage.NewEvent{NID: 23, EventID: "$ev23", Type: "m.room.message", Sender: "@alice:hs", Depth: 23, OriginTS: 1023, StateGroup: 2,
				JSON: []byte(`{"type":"m.room.message","content":{"body":"quokka\u0000seen \\u0000 here"}}`)},
		),
	)
}

func hitNIDs(hits []storage.SearchHit) []int64 {
	out := []int64{}
	for _, h := range hits {
		out = append(out, h.Event.NID)
	}
	return out
}

func TestSearch(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		defer rs.Close()
		searchFixture(t, rs)
		s := storage.NewSearch(db)
		if err := s.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		dog := storage.SearchWords("dog")

		for _, tc := range []struct {
			name string
			q    storage.SearchQuery
			want []int64
		}{
			{"recent, all readable rooms", storage.SearchQuery{UserID: "@alice:hs", Words: dog}, []int64{22, 8, 6, 5, 4}},
			{"left user sees nothing after leaving", storage.SearchQuery{UserID: "@bob:hs", Words: dog}, []int64{6, 5, 4}},
			{"stranger sees nothing", storage.SearchQuery{UserID: "@eve:hs", Words: dog}, []int64{}},
			{"rank: most occurrences first", storage.SearchQuery{UserID: "@bob:hs", Words: dog, ByRank: true, Limit: 1}, []int64{5}},
			{"recent page after a cursor", storage.SearchQuery{UserID: "@alice:hs", Words: dog, BeforeNID: 6, Limit: 1}, []int64{5}},
			{"rank page by offset", storage.SearchQuery{UserID: "@bob:hs", Words: dog, ByRank: true, Offset: 3}, []int64{}},
			{"rooms", storage.SearchQuery{UserID: "@alice:hs", Words: dog, Rooms: []string{"!r2:hs"}}, []int64{22}},
			{"not_rooms", storage.SearchQuery{UserID: "@alice:hs", Words: dog, NotRooms: []string{"!r2:hs"}}, []int64{8, 6, 5, 4}},
			{"senders", storage.SearchQuery{UserID: "@alice:hs", Words: dog, Senders: []string{"@bob:hs"}}, []int64{5}},
			{"not_senders", storage.SearchQuery{UserID: "@alice:hs", Words: dog, NotSenders: []string{"@bob:hs"}}, []int64{22, 8, 6, 4}},
			{"types (keys)", storage.SearchQuery{UserID: "@alice:hs", Words: dog, Types: []string{"m.room.topic"}}, []int64{6}},
			{"empty types list allows nothing", storage.SearchQuery{UserID: "@alice:hs", Words: dog, Types: []string{}}, []int64{}},
			{"all words must match", storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("dog fleas")}, []int64{4}},
			{"prefix", storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("vacc")}, []int64{5}},
			{"stemming", storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("vaccinations")}, []int64{5}},
			{"operators are plain words", storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords(`grooming* NEAR(`)}, []int64{}},
			{"quoted word", storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords(`"grooming"`)}, []int64{6}},
			{"no words", storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords(`!!`)}, []int64{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.q.Limit == 0 {
					tc.q.Limit = 10
				}
				hits, err := s.Search(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				if got := hitNIDs(hits); !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				for i := 1; i < len(hits) && tc.q.ByRank; i++ {
					if hits[i].Rank > hits[i-1].Rank {
						t.Fatalf("ranks not descending: %v", hits)
					}
				}
				if tc.q.BeforeNID == 0 && tc.q.Offset == 0 && tc.q.Limit == 10 {
					n, err := s.Count(ctx, tc.q)
					if err != nil || n != len(tc.want) {
						t.Fatalf("count %d %v, want %d", n, err, len(tc.want))
					}
				}
			})
		}

		if hits, err := s.Search(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("quokka"), Limit: 10}); err != nil || !reflect.DeepEqual(hitNIDs(hits), []int64{23}) {
			t.Fatalf("text with NUL escapes: %v %v", hitNIDs(hits), err)
		}

		// A redaction rewrites the event and takes it out of the index.
		applyBatch(t, rs, &storage.RoomWrite{RoomNID: 1,
			Events: []storage.NewEvent{{NID: 30, EventID: "$ev30", Type: "m.room.redaction", Sender: "@alice:hs", Depth: 30,
				StateGroup: 1, JSON: []byte(`{"type":"m.room.redaction","redacts":"$ev5","content":{}}`)}},
			Redacts: []storage.Redaction{{TargetNID: 5, ByNID: 30, RedactedJSON: []byte(`{"type":"m.room.message","content":{}}`)}},
			Head:    storage.RoomHead{StateGroup: 1, Depth: 30, LastEventNID: 30, Extremities: []string{"$ev30"}}})
		hits, err := s.Search(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: dog, Limit: 10})
		if err != nil || !reflect.DeepEqual(hitNIDs(hits), []int64{22, 8, 6, 4}) {
			t.Fatalf("after redaction: %v %v", hitNIDs(hits), err)
		}
		if hits, _ := s.Search(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("vaccination"), Limit: 10}); len(hits) != 0 {
			t.Fatalf("redacted text still found: %v", hitNIDs(hits))
		}

		// Forgetting a room takes it out of the user's search.
		if err := rs.SetForgotten(ctx, 1, "@bob:hs"); err != nil {
			t.Fatal(err)
		}
		if hits, _ := s.Search(ctx, storage.SearchQuery{UserID: "@bob:hs", Words: dog, Limit: 10}); len(hits) != 0 {
			t.Fatalf("forgotten room searched: %v", hitNIDs(hits))
		}
	})
}

// On SQLite the index follows the event log in batches (CatchUp);
// PostgreSQL indexes in the event's own transaction. Either way a search
// after CatchUp sees exactly the unredacted searchable events, whether a
// redaction came before or after the event was indexed.
func TestSearchCatchUp(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		searchFixture(t, rs)
		s := storage.NewSearch(db)
		find := func(word string) []int64 {
			t.Helper()
			hits, err := s.Search(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords(word), Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			return hitNIDs(hits)
		}
		catchUp := func() {
			t.Helper()
			if err := s.CatchUp(ctx); err != nil {
				t.Fatal(err)
			}
		}
		batched := db.Engine == storage.SQLite
		if s.Batched() != batched {
			t.Fatalf("Batched() = %v on %s", s.Batched(), db.Engine)
		}
		write := func(evs []storage.NewEvent, redacts ...storage.Redaction) {
			t.Helper()
			last := evs[len(evs)-1]
			applyBatch(t, rs, &storage.RoomWrite{RoomNID: 1, Events: evs, Redacts: redacts,
				Head: storage.RoomHead{StateGroup: 1, Depth: last.Depth, LastEventNID: last.NID, Extremities: []string{last.EventID}}})
		}
		redaction := func(nid, target int64) (storage.NewEvent, storage.Redaction) {
			return storage.NewEvent{NID: nid, EventID: fmt.Sprintf("$ev%d", nid), Type: "m.room.redaction", Sender: "@alice:hs", Depth: nid,
					StateGroup: 1, JSON: []byte(fmt.Sprintf(`{"type":"m.room.redaction","redacts":"$ev%d","content":{}}`, target))},
				storage.Redaction{TargetNID: target, ByNID: nid, RedactedJSON: []byte(`{"type":"m.room.message","content":{}}`)}
		}

		if got := find("fleas"); batched && len(got) != 0 {
			t.Fatalf("found %v before the index caught up", got)
		}
		catchUp()
		if got := find("fleas"); !reflect.DeepEqual(got, []int64{4}) {
			t.Fatalf("fleas after catch-up: %v", got)
		}

		// Sent and redacted before the indexer reached it: never indexed.
		write([]storage.NewEvent{textEvent(40, "m.room.message", "@alice:hs", "", "ferret on the table")})
		ev, red := redaction(41, 40)
		write([]storage.NewEvent{ev}, red)
		// Sent after the last catch-up: only a catch-up makes it findable.
		write([]storage.NewEvent{textEvent(42, "m.room.message", "@alice:hs", "", "hamster check-up")})
		if got := find("hamster"); batched == (len(got) != 0) {
			t.Fatalf("hamster before catch-up: %v (batched %v)", got, batched)
		}
		catchUp()
		catchUp() // nothing left: indexes nothing twice
		if got := find("ferret"); len(got) != 0 {
			t.Fatalf("event redacted before indexing was indexed: %v", got)
		}
		if got := find("hamster"); !reflect.DeepEqual(got, []int64{42}) {
			t.Fatalf("hamster after catch-up: %v", got)
		}
		if n, err := s.Count(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("hamster")}); err != nil || n != 1 {
			t.Fatalf("hamster counted %d %v, want 1", n, err)
		}

		// Redacted after indexing: the trigger takes it out at once.
		ev, red = redaction(43, 42)
		write([]storage.NewEvent{ev}, red)
		if got := find("hamster"); len(got) != 0 {
			t.Fatalf("event redacted after indexing still found: %v", got)
		}
		catchUp()
		if got := find("hamster"); len(got) != 0 {
			t.Fatalf("redacted event indexed again by a catch-up: %v", got)
		}
		// Rewritten before the indexer reached it: indexed once, as it is
		// then (the update trigger must leave unindexed rows alone, or
		// the catch-up indexes the row a second time).
		write([]storage.NewEvent{textEvent(44, "m.room.message", "@alice:hs", "", "gerbil")})
		if _, err := db.W.ExecContext(ctx, `UPDATE events SET json = $1 WHERE event_nid = 44`,
			`{"type":"m.room.message","content":{"body":"gerbil in the waiting room"}}`); err != nil {
			t.Fatal(err)
		}
		catchUp()
		if n, err := s.Count(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("gerbil")}); err != nil || n != 1 {
			t.Fatalf("gerbil counted %d %v, want 1", n, err)
		}
		if got := find("waiting"); !reflect.DeepEqual(got, []int64{44}) {
			t.Fatalf("rewritten text: %v", got)
		}

		if batched {
			// A contentless FTS5 'delete' of a row it never held would
			// corrupt the index; the checker reads every segment.
			if _, err := db.W.ExecContext(ctx, `INSERT INTO event_search (event_search) VALUES ('integrity-check')`); err != nil {
				t.Fatalf("index integrity: %v", err)
			}
		}
	})
}

// TestSearchIndexerMigration upgrades a SQLite database whose events were
// indexed by the 0050 trigger: they stay searchable without a catch-up,
// and the indexer starts after them.
func TestSearchIndexerMigration(t *testing.T) {
	ctx := context.Background()
	db := openUpTo(t, "sqlite", 50)
	rs := storage.NewRooms(db)
	searchFixture(t, rs)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := storage.NewSearch(db)
	hits, err := s.Search(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("fleas"), Limit: 10})
	if err != nil || !reflect.DeepEqual(hitNIDs(hits), []int64{4}) {
		t.Fatalf("indexed before the upgrade: %v %v", hitNIDs(hits), err)
	}
	var pos int64
	if err := db.R.QueryRowContext(ctx, `SELECT indexed_nid FROM event_search_position`).Scan(&pos); err != nil || pos != 23 {
		t.Fatalf("indexer position %d %v, want 23 (the newest event)", pos, err)
	}
	if err := s.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, storage.SearchQuery{UserID: "@alice:hs", Words: storage.SearchWords("fleas")}); err != nil || n != 1 {
		t.Fatalf("fleas counted %d %v after a catch-up, want 1 (indexed once)", n, err)
	}
}

func TestSearchWords(t *testing.T) {
	long := ""
	for range 70 {
		long += "é"
	}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"Dog FLEAS", []string{"dog", "fleas"}},
		{`"dog"* OR NEAR(x) -y`, []string{"dog", "or", "near", "x", "y"}},
		{"dog dog", []string{"dog"}},
		{"Grüße, 犬", []string{"grüße", "犬"}},
		{"!!! ... ", nil},
		{"a b c d e f g h i j k l m n o p q r", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"}},
		{long, []string{long[:128]}},
	} {
		if got := storage.SearchWords(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SearchWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
