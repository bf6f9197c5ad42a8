package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"myelin/storage"
)

func sk(s string) *string { return &s }

// applyBatch commits writes in one WriteTx and returns each write's error.
func applyBatch(t *testing.T, rs *storage.Rooms, writes ...*storage.RoomWrite) []error {
	t.Helper()
	ctx := context.Background()
	wtx, err := rs.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(writes))
	for i, w := range writes {
		if errs[i] = wtx.Apply(w); errs[i] != nil && !w.Isolated {
			_ = wtx.Rollback()
			t.Fatalf("apply %d: %v", i, errs[i])
		}
	}
	if err := wtx.Commit(); err != nil {
		t.Fatal(err)
	}
	return errs
}

func memberEvent(nid int64, user, membership string, group, replaces int64) storage.NewEvent {
	return storage.NewEvent{
		NID: nid, EventID: fmt.Sprintf("$ev%d", nid), Type: "m.room.member", StateKey: sk(user), Sender: user,
		Depth: nid, OriginTS: 1000 + nid, StateGroup: group, ReplacesNID: replaces, Membership: membership,
		JSON: []byte(fmt.Sprintf(`{"type":"m.room.member","state_key":%q,"content":{"membership":%q}}`, user, membership)),
	}
}

func TestRoomsWriteAndRead(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		defer rs.Close()

		// Room creation: create event (group 1 snapshot), creator join
		// (group 2 delta), one message, all with a txn and an alias.
		create := storage.NewEvent{NID: 1, EventID: "$ev1", Type: "m.room.create", StateKey: sk(""), Sender: "@a:hs",
			Depth: 1, OriginTS: 1001, StateGroup: 1, JSON: []byte(`{"type":"m.room.create"}`)}
		join := memberEvent(2, "@a:hs", "join", 2, 0)
		msg := storage.NewEvent{NID: 3, EventID: "$ev3", Type: "m.room.message", Sender: "@a:hs", Depth: 3, OriginTS: 1003,
			StateGroup: 2, JSON: []byte(`{"type":"m.room.message","content":{"body":"hi"}}`),
			Txn: &storage.Txn{UserID: "@a:hs", DeviceID: "DEV", Scope: "send m.room.message", TxnID: "t1", CreatedTS: 5}}
		w := &storage.RoomWrite{
			RoomNID: 7,
			NewRoom: &storage.RoomRow{NID: 7, RoomID: "!r:hs", Version: "10", Creator: "@a:hs", CreatedTS: 1000, Visibility: "public"},
			Groups: []storage.NewStateGroup{
				{ID: 1, Entries: []storage.StateEntry{{Type: "m.room.create", StateKey: "", EventNID: 1}}},
				{ID: 2, PrevID: 1, DeltaDepth: 1, Entries: []storage.StateEntry{{Type: "m.room.member", StateKey: "@a:hs", EventNID: 2}}},
			},
			Events:   []storage.NewEvent{create, join, msg},
			Aliases:  []storage.NewAlias{{Alias: "#r:hs", Creator: "@a:hs", TS: 1}},
			Head:     storage.RoomHead{StateGroup: 2, Depth: 3, LastEventNID: 3, Extremities: []string{"$ev3"}},
			Isolated: true,
		}
		if errs := applyBatch(t, rs, w); errs[0] != nil {
			t.Fatal(errs[0])
		}

		room, head, err := rs.RoomByID(ctx, "!r:hs")
		if err != nil {
			t.Fatal(err)
		}
		if room.NID != 7 || room.Version != "10" || room.Visibility != "public" || head.StateGroup != 2 || head.Depth != 3 ||
			head.LastEventNID != 3 || len(head.Extremities) != 1 || head.Extremities[0] != "$ev3" {
			t.Fatalf("room %+v head %+v", room, head)
		}
		if _, _, err := rs.RoomByID(ctx, "!nope:hs"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown room: %v", err)
		}
		refs, err := rs.CurrentStateRefs(ctx, 7)
		if err != nil || len(refs) != 2 {
			t.Fatalf("current state %v %v", refs, err)
		}
		m, err := rs.Membership(ctx, 7, "@a:hs")
		if err != nil || m.Membership != "join" || m.EventNID != 2 {
			t.Fatalf("membership %+v %v", m, err)
		}
		id, err := rs.TxnEvent(ctx, "@a:hs", "DEV", 7, "send m.room.message", "t1")
		if err != nil || id != "$ev3" {
			t.Fatalf("txn %q %v", id, err)
		}
		if _, err := rs.TxnEvent(ctx, "@a:hs", "OTHER", 7, "send m.room.message", "t1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("other device txn: %v", err)
		}
		txns, err := rs.TxnIDsForEvents(ctx, "@a:hs", "DEV", []int64{1, 2, 3})
		if err != nil || len(txns) != 1 || txns[3] != "t1" {
			t.Fatalf("txn ids %v %v", txns, err)
		}
		for _, other := range [][2]string{{"@a:hs", "OTHER"}, {"@b:hs", "DEV"}} {
			if txns, err := rs.TxnIDsForEvents(ctx, other[0], other[1], []int64{1, 2, 3}); err != nil || len(txns) != 0 {
				t.Fatalf("txn ids of %v: %v %v", other, txns, err)
			}
		}
		a, err := rs.AliasByName(ctx, "#r:hs")
		if err != nil || a.RoomID != "!r:hs" {
			t.Fatalf("alias %+v %v", a, err)
		}

		// A second write in the same room: bob joins (group 3), then a
		// conflicting alias in an isolated write fails alone.
		bob := memberEvent(4, "@b:hs", "join", 3, 0)
		w2 := &storage.RoomWrite{RoomNID: 7,
			Groups: []storage.NewStateGroup{{ID: 3, PrevID: 2, DeltaDepth: 2, Entries: []storage.StateEntry{{Type: "m.room.member", StateKey: "@b:hs", EventNID: 4}}}},
			Events: []storage.NewEvent{bob},
			Head:   storage.RoomHead{StateGroup: 3, Depth: 4, LastEventNID: 4, Extremities: []string{"$ev4"}}}
		clash := &storage.RoomWrite{RoomNID: 7, Isolated: true, Aliases: []storage.NewAlias{{Alias: "#r:hs", Creator: "@b:hs"}},
			Events: []storage.NewEvent{{NID: 5, EventID: "$ev5", Type: "m.room.message", Sender: "@b:hs", StateGroup: 3, JSON: []byte(`{}`)}},
			Head:   storage.RoomHead{StateGroup: 3, Depth: 5, LastEventNID: 5, Extremities: []string{"$ev5"}}}
		errs := applyBatch(t, rs, w2, clash)
		if errs[0] != nil || !errors.Is(errs[1], storage.ErrConflict) {
			t.Fatalf("batch errors %v", errs)
		}
		if _, err := rs.EventByID(ctx, "$ev5"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("event of failed isolated write was stored: %v", err)
		}
		_, head, _ = rs.RoomByID(ctx, "!r:hs")
		if head.LastEventNID != 4 || head.Extremities[0] != "$ev4" {
			t.Fatalf("head after batch %+v", head)
		}

		// Bob leaves (group 4 replaces his join), then the state groups
		// resolve history correctly.
		leave := memberEvent(6, "@b:hs", "leave", 4, 4)
		applyBatch(t, rs, &storage.RoomWrite{RoomNID: 7,
			Groups: []storage.NewStateGroup{{ID: 4, PrevID: 3, DeltaDepth: 3, Entries: []storage.StateEntry{{Type: "m.room.member", StateKey: "@b:hs", EventNID: 6}}}},
			Events: []storage.NewEvent{leave},
			Head:   storage.RoomHead{StateGroup: 4, Depth: 6, LastEventNID: 6, Extremities: []string{"$ev6"}}})
		state3, err := rs.StateAtGroup(ctx, 3)
		if err != nil || len(state3) != 3 {
			t.Fatalf("state at 3: %v %v", state3, err)
		}
		nid, err := rs.StateEntryAtGroup(ctx, 4, "m.room.member", "@b:hs")
		if err != nil || nid != 6 {
			t.Fatalf("bob at 4: %d %v", nid, err)
		}
		nid, err = rs.StateEntryAtGroup(ctx, 3, "m.room.member", "@b:hs")
		if err != nil || nid != 4 {
			t.Fatalf("bob at 3: %d %v", nid, err)
		}
		if _, err := rs.StateEntryAtGroup(ctx, 2, "m.room.member", "@b:hs"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("bob at 2: %v", err)
		}
		if d, err := rs.GroupDeltaDepth(ctx, 4); err != nil || d != 3 {
			t.Fatalf("depth %d %v", d, err)
		}
		if pos, err := rs.MembershipPositions(ctx, 7, "@b:hs", "join"); err != nil || len(pos) != 1 || pos[0] != 4 {
			t.Fatalf("MembershipPositions(join) = %v, %v", pos, err)
		}
		if pos, _ := rs.MembershipPositions(ctx, 7, "@b:hs", "leave"); len(pos) != 1 || pos[0] != 6 {
			t.Fatalf("MembershipPositions(leave) = %v", pos)
		}
		members, err := rs.MembersOf(ctx, 7, "join")
		if err != nil || len(members) != 1 || members[0].UserID != "@a:hs" {
			t.Fatalf("joined members %+v %v", members, err)
		}
		rooms, err := rs.RoomsOfUser(ctx, "@b:hs")
		if err != nil || len(rooms) != 1 || rooms[0].Membership != "leave" || rooms[0].RoomID != "!r:hs" {
			t.Fatalf("rooms of bob %+v %v", rooms, err)
		}
		if err := rs.SetForgotten(ctx, 7, "@b:hs"); err != nil {
			t.Fatal(err)
		}
		if m, _ := rs.Membership(ctx, 7, "@b:hs"); !m.Forgotten {
			t.Fatal("forgotten flag not set")
		}

		// Redaction rewrites the JSON in place and links the redaction.
		applyBatch(t, rs, &storage.RoomWrite{RoomNID: 7,
			Events:  []storage.NewEvent{{NID: 8, EventID: "$ev8", Type: "m.room.redaction", Sender: "@a:hs", StateGroup: 4, JSON: []byte(`{"redacts":"$ev3"}`)}},
			Redacts: []storage.Redaction{{TargetNID: 3, ByNID: 8, RedactedJSON: []byte(`{"type":"m.room.message","content":{}}`)}},
			Head:    storage.RoomHead{StateGroup: 4, Depth: 7, LastEventNID: 8, Extremities: []string{"$ev8"}}})
		ev3, err := rs.EventByID(ctx, "$ev3")
		if err != nil || ev3.RedactedByNID != 8 || string(ev3.JSON) != `{"type":"m.room.message","content":{}}` {
			t.Fatalf("redacted event %+v %v", ev3, err)
		}

		evs, err := rs.RoomEvents(ctx, 7, 0, 100, 10, false)
		if err != nil || len(evs) != 6 || evs[0].NID != 1 || evs[5].NID != 8 {
			t.Fatalf("room events %d %v", len(evs), err)
		}
		back, _ := rs.RoomEvents(ctx, 7, 2, 6, 2, true)
		if len(back) != 2 || back[0].NID != 6 || back[1].NID != 4 {
			t.Fatalf("backwards page %+v", back)
		}
		at, err := rs.LastEventAtOrBefore(ctx, 7, 5)
		if err != nil || at.NID != 4 || at.StateGroup != 3 {
			t.Fatalf("event at 5: %+v %v", at, err)
		}
		state, err := rs.CurrentStateEvents(ctx, 7, "m.room.member")
		if err != nil || len(state) != 2 {
			t.Fatalf("member state %d %v", len(state), err)
		}
		if e, err := rs.CurrentStateEvent(ctx, 7, "m.room.create", ""); err != nil || e.NID != 1 || e.StateKey == nil {
			t.Fatalf("create %+v %v", e, err)
		}
		byNID, err := rs.EventsByNID(ctx, []int64{1, 6, 99})
		if err != nil || len(byNID) != 2 {
			t.Fatalf("by nid %d %v", len(byNID), err)
		}
		maxEv, maxGroup, maxRoom, err := rs.MaxIDs(ctx)
		if err != nil || maxEv != 8 || maxGroup != 4 || maxRoom != 7 {
			t.Fatalf("max ids %d %d %d %v", maxEv, maxGroup, maxRoom, err)
		}

		// Aliases and the directory outside the writer.
		if err := rs.CreateAlias(ctx, "#r:hs", 7, "@b:hs", 2); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("duplicate alias: %v", err)
		}
		if err := rs.CreateAlias(ctx, "#other:hs", 7, "@b:hs", 2); err != nil {
			t.Fatal(err)
		}
		if al, _ := rs.AliasesOf(ctx, 7); len(al) != 2 {
			t.Fatalf("aliases %v", al)
		}
		if err := rs.DeleteAlias(ctx, "#other:hs"); err != nil {
			t.Fatal(err)
		}
		if err := rs.DeleteAlias(ctx, "#other:hs"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		pub, err := rs.PublicRooms(ctx)
		if err != nil || len(pub) != 1 || pub[0].JoinedMembers != 1 {
			t.Fatalf("public rooms %+v %v", pub, err)
		}
		if err := rs.SetVisibility(ctx, 7, "private"); err != nil {
			t.Fatal(err)
		}
		if pub, _ := rs.PublicRooms(ctx); len(pub) != 0 {
			t.Fatalf("unpublished room still listed: %+v", pub)
		}
		if n, err := rs.PruneTxns(ctx, 6); err != nil || n != 1 {
			t.Fatalf("prune %d %v", n, err)
		}
	})
}

// TestPruneTxnsInWriteOrder: pruning deletes the transaction IDs written
// before the first one created at or after the cut-off, in event_nid order;
// one stamped earlier than a row before it (the clock stepped back) stays
// until a later prune, and none goes early.
func TestPruneTxnsInWriteOrder(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		defer rs.Close()
		created := []int64{10, 20, 15, 30, 40, 50} // event_nids 2..7; 15 after 20: clock stepped back
		w := &storage.RoomWrite{RoomNID: 1, NewRoom: &storage.RoomRow{NID: 1, RoomID: "!p:hs", Version: "12", Creator: "@a:hs"},
			Events: []storage.NewEvent{{NID: 1, EventID: "$c", Type: "m.room.create", StateKey: sk(""), Sender: "@a:hs",
				StateGroup: 1, JSON: []byte(`{}`)}},
			Head: storage.RoomHead{StateGroup: 1, Depth: 7, LastEventNID: 7}}
		for i, ts := range created {
			nid := int64(i + 2)
			w.Events = append(w.Events, storage.NewEvent{NID: nid, EventID: fmt.Sprintf("$m%d", nid), Type: "m.room.message",
				Sender: "@a:hs", Depth: nid, StateGroup: 1, JSON: []byte(`{}`),
				Txn: &storage.Txn{UserID: "@a:hs", DeviceID: "D", Scope: "send", TxnID: fmt.Sprintf("t%d", nid), CreatedTS: ts}})
		}
		applyBatch(t, rs, w)
		for _, tc := range []struct {
			before  int64
			deleted int64
			left    []int64 // event_nids whose transaction IDs remain
		}{
			{5, 0, []int64{2, 3, 4, 5, 6, 7}},
			{18, 1, []int64{3, 4, 5, 6, 7}}, // 4 (15) waits behind 3 (20)
			{35, 3, []int64{6, 7}},
			{100, 2, nil},
			{100, 0, nil},
		} {
			n, err := rs.PruneTxns(ctx, tc.before)
			if err != nil || n != tc.deleted {
				t.Fatalf("prune before %d: deleted %d (%v), want %d", tc.before, n, err, tc.deleted)
			}
			got, err := rs.TxnIDsForEvents(ctx, "@a:hs", "D", []int64{2, 3, 4, 5, 6, 7})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.left) {
				t.Fatalf("prune before %d: left %v, want event_nids %v", tc.before, got, tc.left)
			}
			for _, nid := range tc.left {
				if got[nid] != fmt.Sprintf("t%d", nid) {
					t.Fatalf("prune before %d: left %v, want event_nids %v", tc.before, got, tc.left)
				}
				if _, err := rs.TxnEvent(ctx, "@a:hs", "D", 1, "send", fmt.Sprintf("t%d", nid)); err != nil {
					t.Fatalf("prune before %d: txn of %d: %v", tc.before, nid, err)
				}
			}
		}
	})
}

func TestRoomsBatchRollback(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		rs := storage.NewRooms(db)
		defer rs.Close()
		wtx, err := rs.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := wtx.Apply(&storage.RoomWrite{RoomNID: 1, NewRoom: &storage.RoomRow{NID: 1, RoomID: "!x:hs", Version: "12", Creator: "@a:hs"},
			Events: []storage.NewEvent{{NID: 1, EventID: "$a", Type: "m.room.create", StateKey: sk(""), Sender: "@a:hs", StateGroup: 1, JSON: []byte(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
		// A duplicate event ID in a non-isolated write fails the whole batch
		// (buffered rows are written, and fail, at Commit).
		err = wtx.Apply(&storage.RoomWrite{RoomNID: 1,
			Events: []storage.NewEvent{{NID: 2, EventID: "$a", Type: "m.room.message", Sender: "@a:hs", StateGroup: 1, JSON: []byte(`{}`)}}})
		if err == nil {
			err = wtx.Commit()
		} else {
			_ = wtx.Rollback()
		}
		if err == nil {
			t.Fatal("duplicate event id accepted")
		}
		if _, _, err := rs.RoomByID(ctx, "!x:hs"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("rolled-back room visible: %v", err)
		}
	})
}
