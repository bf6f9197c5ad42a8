package storage_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"myelin/storage"
)

// relEvent is a message event in room 1 (nid = position) relating to a
// parent when rel is set.
func relEvent(nid int64, sender string, rel *storage.Relation) storage.NewEvent {
	typ := "m.room.message"
	if rel != nil && rel.RelType == "m.annotation" {
		typ = "m.reaction"
	}
	return storage.NewEvent{NID: nid, EventID: fmt.Sprintf("$e%d", nid), Type: typ, Sender: sender, Depth: nid,
		OriginTS: 1000 + nid, StateGroup: 1, JSON: []byte(`{}`), Relation: rel}
}

// seedRelations writes two rooms:
//
//	room 1: $e1 root (@a); $e2 thread reply (@b); $e3 thread reply (@a);
//	        $e4 edit of $e1 (@a); $e5 reference to $e1 (@c);
//	        $e6 reaction to $e2 (@c); $e7 root of a second thread (@b);
//	        $e8 thread reply to $e7 (@c); $e9 reaction to $e6 (@b)
//	room 2: $e10 root (@a), $e11 thread reply (@a)
func seedRelations(t *testing.T, rs *storage.Rooms) {
	t.Helper()
	thread := func(id string) *storage.Relation { return &storage.Relation{RelType: "m.thread", TargetID: id} }
	w1 := &storage.RoomWrite{RoomNID: 1, NewRoom: &storage.RoomRow{NID: 1, RoomID: "!one:hs", Version: "12", Creator: "@a:hs"},
		Events: []storage.NewEvent{
			relEvent(1, "@a:hs", nil),
			relEvent(2, "@b:hs", thread("$e1")),
			relEvent(3, "@a:hs", thread("$e1")),
			relEvent(4, "@a:hs", &storage.Relation{RelType: "m.replace", TargetID: "$e1"}),
			relEvent(5, "@c:hs", &storage.Relation{RelType: "m.reference", TargetID: "$e1"}),
			relEvent(6, "@c:hs", &storage.Relation{RelType: "m.annotation", TargetID: "$e2", Key: "👍"}),
			relEvent(7, "@b:hs", nil),
			relEvent(8, "@c:hs", thread("$e7")),
			relEvent(9, "@b:hs", &storage.Relation{RelType: "m.annotation", TargetID: "$e6", Key: "x"}),
		},
		Head: storage.RoomHead{LastEventNID: 9}}
	w2 := &storage.RoomWrite{RoomNID: 2, NewRoom: &storage.RoomRow{NID: 2, RoomID: "!two:hs", Version: "12", Creator: "@a:hs"},
		Events: []storage.NewEvent{
			{NID: 10, EventID: "$e10", Type: "m.room.message", Sender: "@a:hs", StateGroup: 1, JSON: []byte(`{}`)},
			{NID: 11, EventID: "$e11", Type: "m.room.message", Sender: "@a:hs", StateGroup: 1, JSON: []byte(`{}`), Relation: thread("$e10")},
		},
		Head: storage.RoomHead{LastEventNID: 11}}
	applyBatch(t, rs, w1, w2)
}

func nidsOf(evs []storage.StoredEvent) []int64 {
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.NID)
	}
	return out
}

func TestRelationsChildren(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		seedRelations(t, rs)
		rel := storage.NewRelations(db)
		all := storage.ChildrenQuery{RoomNID: 1, TargetID: "$e1", UpTo: math.MaxInt64, Backward: true, Limit: 50, Depth: 1}
		with := func(f func(q *storage.ChildrenQuery)) storage.ChildrenQuery { q := all; f(&q); return q }
		for _, tc := range []struct {
			name string
			q    storage.ChildrenQuery
			want []int64
		}{
			{"direct children newest first", all, []int64{5, 4, 3, 2}},
			{"forward", with(func(q *storage.ChildrenQuery) { q.Backward = false }), []int64{2, 3, 4, 5}},
			{"rel_type", with(func(q *storage.ChildrenQuery) { q.RelType = "m.thread" }), []int64{3, 2}},
			{"rel_type and event_type", with(func(q *storage.ChildrenQuery) { q.RelType = "m.thread"; q.EventType = "m.reaction" }), []int64{}},
			{"limit", with(func(q *storage.ChildrenQuery) { q.Limit = 2 }), []int64{5, 4}},
			{"position range", with(func(q *storage.ChildrenQuery) { q.After, q.UpTo = 2, 4 }), []int64{4, 3}},
			{"recurse 2", with(func(q *storage.ChildrenQuery) { q.Depth = 2 }), []int64{6, 5, 4, 3, 2}},
			{"recurse 3", with(func(q *storage.ChildrenQuery) { q.Depth = 3 }), []int64{9, 6, 5, 4, 3, 2}},
			{"recurse with filter", with(func(q *storage.ChildrenQuery) { q.Depth = 3; q.RelType = "m.annotation" }), []int64{9, 6}},
			{"other room", with(func(q *storage.ChildrenQuery) { q.RoomNID = 2 }), []int64{}},
			{"no children", with(func(q *storage.ChildrenQuery) { q.TargetID = "$e5" }), []int64{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				evs, err := rel.Children(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				if got := nidsOf(evs); !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			})
		}
	})
}

func TestRelationsThreadsAndAggregates(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		seedRelations(t, rs)
		rel := storage.NewRelations(db)

		for _, tc := range []struct {
			name        string
			participant string
			upTo        int64
			limit       int
			want        []storage.Thread
		}{
			{"all by latest reply", "", math.MaxInt64, 10, []storage.Thread{{"$e7", 8}, {"$e1", 3}}},
			{"page", "", 7, 10, []storage.Thread{{"$e1", 3}}},
			{"limit", "", math.MaxInt64, 1, []storage.Thread{{"$e7", 8}}},
			{"participated by replying", "@c:hs", math.MaxInt64, 10, []storage.Thread{{"$e7", 8}}},
			{"participated as root sender or replier", "@b:hs", math.MaxInt64, 10, []storage.Thread{{"$e7", 8}, {"$e1", 3}}},
			{"participated nowhere", "@z:hs", math.MaxInt64, 10, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := rel.Threads(ctx, 1, tc.participant, tc.upTo, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			})
		}

		sums, err := rel.Summaries(ctx, []string{"$e1", "$e7", "$e10"}, []string{"m.thread", "m.replace"}, "@a:hs", nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]storage.RelationSummary{}
		for _, s := range sums {
			got[s.TargetID+" "+s.RelType] = s
		}
		want := map[string]storage.RelationSummary{
			"$e1 m.thread":  {TargetID: "$e1", RelType: "m.thread", Count: 2, Latest: 3, ByViewer: true},
			"$e1 m.replace": {TargetID: "$e1", RelType: "m.replace", Count: 1, Latest: 4, ByViewer: true},
			"$e7 m.thread":  {TargetID: "$e7", RelType: "m.thread", Count: 1, Latest: 8},
			"$e10 m.thread": {TargetID: "$e10", RelType: "m.thread", Count: 1, Latest: 11, ByViewer: true},
		}
		if len(got) != len(want) {
			t.Fatalf("summaries %v, want %v", got, want)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: got %+v, want %+v", k, got[k], w)
			}
		}
		// Ignored senders do not count.
		sums, err = rel.Summaries(ctx, []string{"$e1"}, []string{"m.thread"}, "@c:hs", []string{"@a:hs"})
		if err != nil {
			t.Fatal(err)
		}
		if len(sums) != 1 || sums[0].Count != 1 || sums[0].Latest != 2 || sums[0].ByViewer {
			t.Fatalf("with @a ignored: %+v", sums)
		}

		kids, err := rel.ChildrenOf(ctx, []string{"$e1", "$e2"}, "m.reference", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(kids) != 1 || kids[0] != (storage.Child{TargetID: "$e1", NID: 5, EventID: "$e5", Type: "m.room.message", Sender: "@c:hs", OriginTS: 1005}) {
			t.Fatalf("references: %+v", kids)
		}
		if kids, err = rel.ChildrenOf(ctx, []string{"$e1"}, "m.reference", []string{"@c:hs"}); err != nil || len(kids) != 0 {
			t.Fatalf("references without ignored @c: %+v, %v", kids, err)
		}
	})
}

// A redacted child loses its relationship; a redacted parent keeps its
// children.
func TestRelationsRedaction(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		seedRelations(t, rs)
		rel := storage.NewRelations(db)
		applyBatch(t, rs, &storage.RoomWrite{RoomNID: 1,
			Events:  []storage.NewEvent{relEvent(12, "@a:hs", nil), relEvent(13, "@a:hs", nil)},
			Redacts: []storage.Redaction{{TargetNID: 3, ByNID: 12, RedactedJSON: []byte(`{}`)}, {TargetNID: 1, ByNID: 13, RedactedJSON: []byte(`{}`)}},
			Head:    storage.RoomHead{LastEventNID: 13}})
		evs, err := rel.Children(ctx, storage.ChildrenQuery{RoomNID: 1, TargetID: "$e1", RelType: "m.thread", UpTo: math.MaxInt64, Backward: true, Limit: 10, Depth: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := nidsOf(evs); !slices.Equal(got, []int64{2}) {
			t.Fatalf("thread after redacting $e3 and the root: %v, want [2]", got)
		}
		threads, err := rel.Threads(ctx, 1, "", math.MaxInt64, 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(threads, []storage.Thread{{"$e7", 8}, {"$e1", 2}}) {
			t.Fatalf("threads: %v", threads)
		}
	})
}
