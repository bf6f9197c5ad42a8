package storage_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"

	"myelin/storage"
)

// syncFixture writes two rooms through the roomserver's write path:
//
//	room 1 (!one:hs): 1 create(@a) 2 join @a 3 msg 4 join @b 5 topic 6 msg(@b) 7 invite @c 9 msg
//	room 2 (!two:hs): 8 create(@b) 10 join @b
//
// State groups: room 1 snapshot 1 at the create, deltas after; room 2 its own.
func syncFixture(t *testing.T, db *storage.DB) {
	t.Helper()
	rs := storage.NewRooms(db)
	t.Cleanup(func() { rs.Close() })
	ev := func(nid int64, typ string, sk *string, sender string, group, replaces int64, membership string) storage.NewEvent {
		body := fmt.Sprintf(`{"type":%q,"sender":%q,"content":{}}`, typ, sender)
		if membership != "" {
			body = fmt.Sprintf(`{"type":%q,"sender":%q,"content":{"membership":%q}}`, typ, sender, membership)
		}
		return storage.NewEvent{NID: nid, EventID: fmt.Sprintf("$e%d", nid), Type: typ, StateKey: sk, Sender: sender,
			Depth: nid, OriginTS: 1000 * nid, StateGroup: group, ReplacesNID: replaces, Membership: membership, JSON: []byte(body)}
	}
	entry := func(typ, key string, nid int64) storage.StateEntry {
		return storage.StateEntry{Type: typ, StateKey: key, EventNID: nid}
	}
	r1 := &storage.RoomWrite{RoomNID: 1, NewRoom: &storage.RoomRow{NID: 1, RoomID: "!one:hs", Version: "12", Creator: "@a:hs", CreatedTS: 1},
		Groups: []storage.NewStateGroup{
			{ID: 1, Entries: []storage.StateEntry{entry("m.room.create", "", 1)}},
			{ID: 2, PrevID: 1, DeltaDepth: 1, Entries: []storage.StateEntry{entry("m.room.member", "@a:hs", 2)}},
			{ID: 3, PrevID: 2, DeltaDepth: 2, Entries: []storage.StateEntry{entry("m.room.member", "@b:hs", 4)}},
			{ID: 4, PrevID: 3, DeltaDepth: 3, Entries: []storage.StateEntry{entry("m.room.topic", "", 5)}},
			{ID: 5, PrevID: 4, DeltaDepth: 4, Entries: []storage.StateEntry{entry("m.room.member", "@c:hs", 7)}},
		},
		Events: []storage.NewEvent{
			ev(1, "m.room.create", sk(""), "@a:hs", 1, 0, ""),
			ev(2, "m.room.member", sk("@a:hs"), "@a:hs", 2, 0, "join"),
			ev(3, "m.room.message", nil, "@a:hs", 2, 0, ""),
			ev(4, "m.room.member", sk("@b:hs"), "@b:hs", 3, 0, "join"),
			ev(5, "m.room.topic", sk(""), "@a:hs", 4, 0, ""),
			ev(6, "m.room.message", nil, "@b:hs", 4, 0, ""),
			ev(7, "m.room.member", sk("@c:hs"), "@a:hs", 5, 0, "invite"),
		},
		Head: storage.RoomHead{StateGroup: 5, Depth: 7, LastEventNID: 7, Extremities: []string{"$e7"}},
	}
	r2 := &storage.RoomWrite{RoomNID: 2, NewRoom: &storage.RoomRow{NID: 2, RoomID: "!two:hs", Version: "12", Creator: "@b:hs", CreatedTS: 1},
		Groups: []storage.NewStateGroup{
			{ID: 6, Entries: []storage.StateEntry{entry("m.room.create", "", 8)}},
			{ID: 7, PrevID: 6, DeltaDepth: 1, Entries: []storage.StateEntry{entry("m.room.member", "@b:hs", 10)}},
		},
		Events: []storage.NewEvent{
			ev(8, "m.room.create", sk(""), "@b:hs", 6, 0, ""),
			ev(10, "m.room.member", sk("@b:hs"), "@b:hs", 7, 0, "join"),
		},
		Head: storage.RoomHead{StateGroup: 7, Depth: 2, LastEventNID: 10, Extremities: []string{"$e10"}},
	}
	applyBatch(t, rs, r1, r2)
	r1b := &storage.RoomWrite{RoomNID: 1, Events: []storage.NewEvent{ev(9, "m.room.message", nil, "@b:hs", 5, 0, "")},
		Head: storage.RoomHead{StateGroup: 5, Depth: 8, LastEventNID: 9, Extremities: []string{"$e9"}}}
	applyBatch(t, rs, r1b)
}

func nids(evs []storage.StoredEvent) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.NID
	}
	return out
}

func TestSyncEventReads(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		syncFixture(t, db)
		s := storage.NewSync(db)

		rooms, err := s.UserRooms(ctx, "@a:hs")
		if err != nil || len(rooms) != 1 || rooms[0].RoomID != "!one:hs" || rooms[0].Membership != "join" || rooms[0].EventNID != 2 {
			t.Fatalf("UserRooms(@a) = %+v, %v", rooms, err)
		}
		if rooms, _ := s.UserRooms(ctx, "@c:hs"); len(rooms) != 1 || rooms[0].Membership != "invite" || rooms[0].EventNID != 7 {
			t.Fatalf("UserRooms(@c) = %+v", rooms)
		}
		if nid, err := s.RoomNID(ctx, "!two:hs"); err != nil || nid != 2 {
			t.Fatalf("RoomNID = %d, %v", nid, err)
		}
		if _, err := s.RoomNID(ctx, "!nope:hs"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("RoomNID(unknown) = %v", err)
		}

		changed := []struct {
			user        string
			after, upTo int64
			want        map[int64]int64
		}{
			{"@b:hs", 0, 100, map[int64]int64{1: 9, 2: 10}},
			{"@b:hs", 8, 9, map[int64]int64{1: 9}},
			{"@b:hs", 9, 10, map[int64]int64{2: 10}},
			{"@a:hs", 7, 8, map[int64]int64{}},
			{"@nobody:hs", 0, 100, map[int64]int64{}},
		}
		for _, c := range changed {
			got, err := s.ChangedRooms(ctx, c.user, c.after, c.upTo)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("ChangedRooms(%s, %d, %d) = %v, %v; want %v", c.user, c.after, c.upTo, got, err, c.want)
			}
		}

		latest := []struct {
			windows []storage.EventWindow
			limit   int
			want    []int64 // per room newest first, rooms in window order
		}{
			{[]storage.EventWindow{{RoomNID: 1, After: 0, UpTo: 100}}, 3, []int64{9, 7, 6}},
			{[]storage.EventWindow{{RoomNID: 1, After: 0, UpTo: 5}, {RoomNID: 2, After: 0, UpTo: 100}}, 2, []int64{5, 4, 10, 8}},
			{[]storage.EventWindow{{RoomNID: 1, After: 6, UpTo: 8}, {RoomNID: 2, After: 10, UpTo: 100}}, 5, []int64{7}},
		}
		for _, c := range latest {
			got, err := s.LatestEvents(ctx, c.windows, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			sort.SliceStable(got, func(i, j int) bool { return got[i].RoomNID < got[j].RoomNID })
			if !slices.Equal(nids(got), c.want) {
				t.Errorf("LatestEvents(%+v, %d) = %v, want %v", c.windows, c.limit, nids(got), c.want)
			}
		}
		// Many windows span several UNION chunks.
		var many []storage.EventWindow
		for i := 0; i < 450; i++ {
			many = append(many, storage.EventWindow{RoomNID: int64(1 + i%2), After: 0, UpTo: 100})
		}
		if got, err := s.LatestEvents(ctx, many, 1); err != nil || len(got) != 450 {
			t.Fatalf("LatestEvents(450 windows) = %d rows, %v", len(got), err)
		}

		if got, err := s.RoomEvents(ctx, 1, 2, 6, 10, false); err != nil || !slices.Equal(nids(got), []int64{3, 4, 5, 6}) {
			t.Errorf("RoomEvents forward = %v, %v", nids(got), err)
		}
		if got, err := s.RoomEvents(ctx, 1, 0, 9, 2, true); err != nil || !slices.Equal(nids(got), []int64{9, 7}) {
			t.Errorf("RoomEvents backward = %v, %v", nids(got), err)
		}
		if got, err := s.EventsByTimestamp(ctx, 1, 4500, true, 0, 2); err != nil || !slices.Equal(nids(got), []int64{5, 6}) {
			t.Errorf("EventsByTimestamp forward = %v, %v", nids(got), err)
		}
		if got, err := s.EventsByTimestamp(ctx, 1, 4500, false, 1, 2); err != nil || !slices.Equal(nids(got), []int64{3, 2}) {
			t.Errorf("EventsByTimestamp backward skip 1 = %v, %v", nids(got), err)
		}
		if got, err := s.EventsByNID(ctx, []int64{9, 1, 99}); err != nil || len(got) != 2 {
			t.Errorf("EventsByNID = %v, %v", nids(got), err)
		}
		if e, err := s.EventByID(ctx, "$e5"); err != nil || e.NID != 5 || e.StateGroup != 4 {
			t.Errorf("EventByID = %+v, %v", e, err)
		}
		if _, err := s.EventByID(ctx, "$nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("EventByID(unknown) = %v", err)
		}

		last, err := s.LastEventsAtOrBefore(ctx, []int64{1, 2, 3}, 8)
		if err != nil || len(last) != 2 || last[1].NID != 7 || last[2].NID != 8 {
			t.Fatalf("LastEventsAtOrBefore = %v, %v", last, err)
		}
		if last, _ := s.LastEventsAtOrBefore(ctx, []int64{2}, 7); len(last) != 0 {
			t.Fatalf("LastEventsAtOrBefore before the room existed = %v", last)
		}

		state, err := s.StateAtGroups(ctx, []int64{3, 5, 7}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys := func(es []storage.StateEntry) []string {
			var out []string
			for _, e := range es {
				out = append(out, fmt.Sprintf("%s|%s=%d", e.Type, e.StateKey, e.EventNID))
			}
			sort.Strings(out)
			return out
		}
		wantState := map[int64][]string{
			3: {"m.room.create|=1", "m.room.member|@a:hs=2", "m.room.member|@b:hs=4"},
			5: {"m.room.create|=1", "m.room.member|@a:hs=2", "m.room.member|@b:hs=4", "m.room.member|@c:hs=7", "m.room.topic|=5"},
			7: {"m.room.create|=8", "m.room.member|@b:hs=10"},
		}
		for g, want := range wantState {
			if got := keys(state[g]); !slices.Equal(got, want) {
				t.Errorf("StateAtGroups[%d] = %v, want %v", g, got, want)
			}
		}
		lazy, err := s.StateAtGroups(ctx, []int64{5}, nil, []string{"@b:hs"})
		if want := []string{"m.room.create|=1", "m.room.member|@b:hs=4", "m.room.topic|=5"}; err != nil || !slices.Equal(keys(lazy[5]), want) {
			t.Errorf("StateAtGroups(members @b) = %v, %v; want %v", keys(lazy[5]), err, want)
		}
		noMembers, _ := s.StateAtGroups(ctx, []int64{5}, nil, []string{})
		if want := []string{"m.room.create|=1", "m.room.topic|=5"}; !slices.Equal(keys(noMembers[5]), want) {
			t.Errorf("StateAtGroups(no members) = %v, want %v", keys(noMembers[5]), want)
		}
		typed, _ := s.StateAtGroups(ctx, []int64{5}, []string{"m.room.topic", "m.room.create"}, nil)
		if want := []string{"m.room.create|=1", "m.room.topic|=5"}; !slices.Equal(keys(typed[5]), want) {
			t.Errorf("StateAtGroups(types) = %v, want %v", keys(typed[5]), want)
		}
		if empty, err := s.StateAtGroups(ctx, nil, nil, nil); err != nil || len(empty) != 0 {
			t.Errorf("StateAtGroups(none) = %v, %v", empty, err)
		}

		if senders, err := s.SendersBetween(ctx, 5, 9); err != nil || !slices.Equal(sorted(senders), []string{"@a:hs", "@b:hs"}) {
			t.Errorf("SendersBetween = %v, %v", senders, err)
		}
		if senders, _ := s.SendersBetween(ctx, 9, 9); len(senders) != 0 {
			t.Errorf("SendersBetween(empty) = %v", senders)
		}
		counts, err := s.MemberCounts(ctx, []int64{1, 2})
		if err != nil || counts[1]["join"] != 2 || counts[1]["invite"] != 1 || counts[2]["join"] != 1 {
			t.Errorf("MemberCounts = %v, %v", counts, err)
		}
		heroes, err := s.HeroCandidates(ctx, []int64{1, 2}, "@b:hs", 5)
		if err != nil || len(heroes[1]) != 2 || heroes[1][0].UserID != "@a:hs" || heroes[1][1].UserID != "@c:hs" || len(heroes[2]) != 0 {
			t.Errorf("HeroCandidates = %+v, %v", heroes, err)
		}
		if users, err := s.JoinedUsers(ctx, "!one:hs"); err != nil || !slices.Equal(sorted(users), []string{"@a:hs", "@b:hs"}) {
			t.Errorf("JoinedUsers = %v, %v", users, err)
		}
		if users, err := s.JoinedUsersIn(ctx, []int64{1, 2}); err != nil || !slices.Equal(sorted(users), []string{"@a:hs", "@b:hs"}) {
			t.Errorf("JoinedUsersIn = %v, %v", users, err)
		}
		if users, err := s.UsersSharingRooms(ctx, "@a:hs"); err != nil || !slices.Equal(sorted(users), []string{"@a:hs", "@b:hs"}) {
			t.Errorf("UsersSharingRooms = %v, %v", users, err)
		}
		for _, c := range []struct {
			a, b string
			want bool
		}{{"@a:hs", "@b:hs", true}, {"@a:hs", "@c:hs", false}, {"@b:hs", "@b:hs", true}} {
			if got, err := s.SharesRoom(ctx, c.a, c.b); err != nil || got != c.want {
				t.Errorf("SharesRoom(%s, %s) = %v, %v", c.a, c.b, got, err)
			}
		}
	})
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

func TestSyncFilters(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := storage.NewSync(db)
		id1, err := s.PutFilter(ctx, "@a:hs", `{"room":{}}`)
		if err != nil || id1 != 1 {
			t.Fatalf("PutFilter = %d, %v", id1, err)
		}
		id2, _ := s.PutFilter(ctx, "@a:hs", `{"presence":{}}`)
		again, _ := s.PutFilter(ctx, "@a:hs", `{"room":{}}`)
		other, _ := s.PutFilter(ctx, "@b:hs", `{"room":{}}`)
		if id2 != 2 || again != 1 || other != 1 {
			t.Fatalf("filter IDs: second %d, same again %d, other user %d", id2, again, other)
		}
		if js, err := s.Filter(ctx, "@a:hs", 2); err != nil || js != `{"presence":{}}` {
			t.Fatalf("Filter = %q, %v", js, err)
		}
		if _, err := s.Filter(ctx, "@b:hs", 2); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("another user's filter: %v", err)
		}
	})
}

func TestSyncAccountDataReceiptsPresence(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		syncFixture(t, db)
		s := storage.NewSync(db)

		// Account data: put, replace, read, list by position.
		err := s.Tx(ctx, func(tx *sql.Tx) error {
			if err := s.PutAccountData(ctx, tx, "@a:hs", "", "m.direct", []byte(`{"@b:hs":["!one:hs"]}`), 1); err != nil {
				return err
			}
			if err := s.PutAccountData(ctx, tx, "@a:hs", "!one:hs", "m.tag", []byte(`{"tags":{}}`), 2); err != nil {
				return err
			}
			// Read inside the transaction sees the write.
			if c, err := s.AccountDataEntry(ctx, tx, "@a:hs", "!one:hs", "m.tag"); err != nil || string(c) != `{"tags":{}}` {
				return fmt.Errorf("read in tx: %q, %v", c, err)
			}
			return s.PutAccountData(ctx, tx, "@a:hs", "", "m.direct", []byte(`{}`), 3)
		})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := s.AccountDataEntry(ctx, nil, "@a:hs", "", "m.direct"); err != nil || string(c) != `{}` {
			t.Fatalf("AccountDataEntry = %q, %v", c, err)
		}
		if _, err := s.AccountDataEntry(ctx, nil, "@b:hs", "", "m.direct"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unset account data: %v", err)
		}
		ad, err := s.AccountDataSince(ctx, "@a:hs", 0, 10)
		if err != nil || len(ad) != 2 || ad[0].Type != "m.tag" || ad[1].Type != "m.direct" || ad[1].StreamPos != 3 {
			t.Fatalf("AccountDataSince = %+v, %v", ad, err)
		}
		if ad, _ := s.AccountDataSince(ctx, "@a:hs", 2, 2); len(ad) != 0 {
			t.Fatalf("AccountDataSince(empty window) = %+v", ad)
		}

		// Receipts: forward only; private ones only to their owner.
		put := func(r storage.Receipt) bool {
			t.Helper()
			var wrote bool
			if err := s.Tx(ctx, func(tx *sql.Tx) (err error) { wrote, err = s.PutReceipt(ctx, tx, r); return }); err != nil {
				t.Fatal(err)
			}
			return wrote
		}
		if !put(storage.Receipt{RoomID: "!one:hs", Type: "m.read", UserID: "@b:hs", EventID: "$e6", EventPos: 6, TS: 1, StreamPos: 1}) {
			t.Fatal("first receipt not written")
		}
		if put(storage.Receipt{RoomID: "!one:hs", Type: "m.read", UserID: "@b:hs", EventID: "$e3", EventPos: 3, TS: 2, StreamPos: 2}) {
			t.Fatal("a receipt moved backwards")
		}
		if !put(storage.Receipt{RoomID: "!one:hs", Type: "m.read", UserID: "@b:hs", ThreadID: "main", EventID: "$e3", EventPos: 3, TS: 2, StreamPos: 2}) {
			t.Fatal("threaded receipt not written beside the unthreaded one")
		}
		put(storage.Receipt{RoomID: "!one:hs", Type: "m.read.private", UserID: "@a:hs", EventID: "$e9", EventPos: 9, TS: 3, StreamPos: 3})
		put(storage.Receipt{RoomID: "!two:hs", Type: "m.read", UserID: "@b:hs", EventID: "$e10", EventPos: 10, TS: 4, StreamPos: 4})

		forB, err := s.ReceiptsSince(ctx, []string{"!one:hs"}, "@b:hs", 0, 10)
		if err != nil || len(forB) != 2 {
			t.Fatalf("ReceiptsSince(@b) = %+v, %v", forB, err)
		}
		forA, _ := s.ReceiptsSince(ctx, []string{"!one:hs", "!two:hs"}, "@a:hs", 1, 10)
		if len(forA) != 3 || forA[1].Type != "m.read.private" || forA[2].RoomID != "!two:hs" {
			t.Fatalf("ReceiptsSince(@a, after 1) = %+v", forA)
		}
		upTo, err := s.ReadUpTo(ctx, "@b:hs", []string{"!one:hs", "!two:hs"})
		if err != nil || upTo["!one:hs"] != 6 || upTo["!two:hs"] != 10 {
			t.Fatalf("ReadUpTo = %v, %v", upTo, err)
		}

		// Presence.
		msg := "surgery until 3"
		if err := s.Tx(ctx, func(tx *sql.Tx) error {
			if err := s.PutPresence(ctx, tx, storage.Presence{UserID: "@a:hs", State: "online", StatusMsg: &msg, LastActiveTS: 50, StreamPos: 1}); err != nil {
				return err
			}
			if err := s.PutPresence(ctx, tx, storage.Presence{UserID: "@c:hs", State: "online", LastActiveTS: 50, StreamPos: 2}); err != nil {
				return err
			}
			return s.PutPresence(ctx, tx, storage.Presence{UserID: "@b:hs", State: "offline", LastActiveTS: 60, StreamPos: 3})
		}); err != nil {
			t.Fatal(err)
		}
		if p, err := s.PresenceOf(ctx, "@a:hs"); err != nil || p.State != "online" || p.StatusMsg == nil || *p.StatusMsg != msg {
			t.Fatalf("PresenceOf = %+v, %v", p, err)
		}
		if _, err := s.PresenceOf(ctx, "@z:hs"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("PresenceOf(unknown) = %v", err)
		}
		// @a shares room one with @b; @c is only invited there.
		ps, err := s.PresenceSince(ctx, "@a:hs", 0, 10)
		if err != nil || len(ps) != 2 || ps[0].UserID != "@a:hs" || ps[1].UserID != "@b:hs" {
			t.Fatalf("PresenceSince = %+v, %v", ps, err)
		}
		if ps, _ := s.PresenceSince(ctx, "@c:hs", 0, 10); len(ps) != 1 || ps[0].UserID != "@c:hs" {
			t.Fatalf("PresenceSince(@c) = %+v", ps)
		}
		if ps, err := s.PresenceOfUsers(ctx, []string{"@b:hs", "@z:hs", "@a:hs"}); err != nil || len(ps) != 2 || ps[0].UserID != "@a:hs" {
			t.Fatalf("PresenceOfUsers = %+v, %v", ps, err)
		}
		on, err := s.PresenceNotOffline(ctx)
		if err != nil || len(on) != 2 {
			t.Fatalf("PresenceNotOffline = %+v, %v", on, err)
		}

		a, r, p, err := s.StreamPositions(ctx)
		if err != nil || a != 3 || r != 4 || p != 3 {
			t.Fatalf("StreamPositions = %d %d %d, %v", a, r, p, err)
		}
	})
}
