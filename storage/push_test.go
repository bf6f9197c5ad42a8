package storage_test

import (
	"context"
	"fmt"
	"testing"

	"myelin/storage"
)

func TestPushStorage(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := storage.NewPush(db)
		storeRoom(t, db, 100, "!r:hs")
		if pos, ok, err := p.ConsumerPosition(ctx, "push"); err != nil || ok || pos != 0 {
			t.Fatalf("fresh position %d %v %v", pos, ok, err)
		}
		n := func(nid int64, thread string, hl bool) storage.Notification {
			return storage.Notification{UserID: "@a:hs", EventNID: nid, RoomID: "!r:hs", ThreadID: thread, Highlight: hl, Actions: []byte(`["notify"]`), TS: nid}
		}
		batch := []storage.Notification{n(1, "main", false), n(2, "main", true), n(3, "$t", false), n(4, "$t", true), n(5, "main", false)}
		if err := p.StoreNotifications(ctx, "push", 5, batch); err != nil {
			t.Fatal(err)
		}
		// A replayed batch counts nothing twice.
		if err := p.StoreNotifications(ctx, "push", 5, batch[:2]); err != nil {
			t.Fatal(err)
		}
		if pos, ok, _ := p.ConsumerPosition(ctx, "push"); pos != 5 || !ok {
			t.Fatalf("position %d %v", pos, ok)
		}
		counts := func() string {
			t.Helper()
			cs, err := p.UnreadCounts(ctx, "@a:hs", []string{"!r:hs", "!other:hs"})
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]string{}
			for _, c := range cs {
				m[c.ThreadID] = fmt.Sprintf("%d/%d", c.Notifications, c.Highlight)
			}
			return fmt.Sprint(m)
		}
		if got := counts(); got != "map[$t:2/1 main:3/1]" {
			t.Fatalf("counts %s", got)
		}
		receipt := func(typ, thread string, pos int64) {
			t.Helper()
			if _, err := db.W.ExecContext(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
				VALUES ('!r:hs', $1, '@a:hs', $2, 'x', $3, 0, $3) ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_pos = excluded.event_pos`, typ, thread, pos); err != nil {
				t.Fatal(err)
			}
		}
		receipt("m.read.private", "main", 2) // main thread read up to 2
		if got := counts(); got != "map[$t:2/1 main:1/0]" {
			t.Fatalf("after threaded receipt %s", got)
		}
		receipt("m.read", "", 3) // unthreaded: everything up to 3
		if got := counts(); got != "map[$t:1/1 main:1/0]" {
			t.Fatalf("after unthreaded receipt %s", got)
		}
		list, err := p.Notifications(ctx, "@a:hs", 0, 2, false)
		if err != nil || len(list) != 2 || list[0].EventNID != 5 || list[1].EventNID != 4 || list[0].Read || list[1].Read {
			t.Fatalf("list %+v %v", list, err)
		}
		list, _ = p.Notifications(ctx, "@a:hs", 4, 10, true)
		if len(list) != 1 || list[0].EventNID != 2 || !list[0].Read {
			t.Fatalf("highlights before 4: %+v", list)
		}
		// Pushers: append=false takes the pushkey from other users.
		ps := storage.Pusher{UserID: "@a:hs", AppID: "app", PushKey: "k", Kind: "http", Data: []byte(`{"url":"https://x/_matrix/push/v1/notify"}`), CreatedTS: 1}
		if err := p.SetPusher(ctx, ps, true); err != nil {
			t.Fatal(err)
		}
		ps.UserID, ps.Lang = "@b:hs", "en"
		if err := p.SetPusher(ctx, ps, false); err != nil {
			t.Fatal(err)
		}
		if a, _ := p.Pushers(ctx, "@a:hs"); len(a) != 0 {
			t.Fatalf("a's pusher survived append=false: %+v", a)
		}
		if b, _ := p.Pushers(ctx, "@b:hs"); len(b) != 1 || b[0].Lang != "en" {
			t.Fatalf("b's pushers %+v", b)
		}
		if err := p.DeletePusher(ctx, "@b:hs", "app", "k"); err != nil {
			t.Fatal(err)
		}
		if b, _ := p.Pushers(ctx, "@b:hs"); len(b) != 0 {
			t.Fatalf("not deleted: %+v", b)
		}
		// Pushers go with the device that created them; those with no
		// recorded device, and other users', stay.
		for _, q := range []string{
			`INSERT INTO users (localpart, created_ts) VALUES ('c', 1)`,
			`INSERT INTO devices (localpart, device_id, created_ts) VALUES ('c', 'KEPT', 1)`,
		} {
			if _, err := db.W.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct{ user, key, device string }{
			{"@c:hs", "kept", "KEPT"}, {"@c:hs", "gone", "GONE"}, {"@c:hs", "legacy", ""}, {"@d:hs", "other", "GONE"},
		} {
			pc := ps
			pc.UserID, pc.PushKey, pc.DeviceID = c.user, c.key, c.device
			if err := p.SetPusher(ctx, pc, true); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := p.DeletePushersOfRemovedDevices(ctx, "@c:hs", "c"); err != nil || n != 1 {
			t.Fatalf("deleted %d, %v", n, err)
		}
		var left []string
		cs, _ := p.Pushers(ctx, "@c:hs")
		for _, c := range cs {
			left = append(left, c.PushKey+"/"+c.DeviceID)
		}
		if fmt.Sprint(left) != "[kept/KEPT legacy/]" {
			t.Fatalf("left %v", left)
		}
		if d, _ := p.Pushers(ctx, "@d:hs"); len(d) != 1 {
			t.Fatalf("another user's pusher: %+v", d)
		}
		// Rules: an error from the edit changes nothing.
		if err := p.UpdatePushRules(ctx, "@a:hs", func(old []byte) ([]byte, error) { return []byte(`{"v":1}`), nil }); err != nil {
			t.Fatal(err)
		}
		_ = p.UpdatePushRules(ctx, "@a:hs", func(old []byte) ([]byte, error) { return nil, fmt.Errorf("refused") })
		if r, _ := p.PushRules(ctx, "@a:hs"); string(r) != `{"v":1}` {
			t.Fatalf("rules %s", r)
		}
		if m, _ := p.PushRulesOf(ctx, []string{"@a:hs", "@b:hs"}); len(m) != 1 {
			t.Fatalf("rules of %v", m)
		}
	})
}

// storeRoom adds a bare rooms row: notifications are keyed by room_nid.
func storeRoom(t *testing.T, db *storage.DB, nid int64, roomID string) {
	t.Helper()
	if _, err := db.W.ExecContext(context.Background(), `INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid)
		VALUES ($1, $2, '12', '@c:hs', 0, 0, 0, 0)`, nid, roomID); err != nil {
		t.Fatal(err)
	}
}

// TestNotificationsPageAcrossRooms checks the /notifications page query
// (read room by room from a cutoff, or in one pass for highlights) against
// the plain definition: the user's rows newest first, before "before",
// at most limit.
func TestNotificationsPageAcrossRooms(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := storage.NewPush(db)
		rooms := []string{"!busy:hs", "!quiet:hs", "!mid:hs", "!one:hs"}
		for i, r := range rooms {
			storeRoom(t, db, int64(i+1), r)
		}
		// Uneven rooms: the busy one has most rows, "one" a single old row.
		var ns []storage.Notification
		type row struct {
			nid int64
			hl  bool
		}
		var all []row
		for nid := int64(1); nid <= 120; nid++ {
			room := rooms[0]
			switch {
			case nid == 2:
				room = rooms[3]
			case nid%10 == 0:
				room = rooms[1]
			case nid%3 == 0:
				room = rooms[2]
			}
			hl := nid%7 == 0
			ns = append(ns, storage.Notification{UserID: "@a:hs", EventNID: nid, RoomID: room, ThreadID: "main", Highlight: hl, Actions: []byte(`["notify"]`)})
			// Another user's rows share the table and must not show.
			ns = append(ns, storage.Notification{UserID: "@b:hs", EventNID: nid, RoomID: room, ThreadID: "main", Actions: []byte(`["notify"]`)})
			all = append(all, row{nid, hl})
		}
		if err := p.StoreNotifications(ctx, "push", 120, ns); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			before    int64
			limit     int
			highlight bool
		}{
			{0, 1, false}, {0, 5, false}, {0, 20, false}, {0, 100, false}, {0, 500, false},
			{111, 7, false}, {40, 20, false}, {3, 20, false}, {2, 5, false}, {1, 5, false},
			{0, 3, true}, {50, 4, true}, {0, 100, true},
		} {
			var want []int64
			for i := len(all) - 1; i >= 0 && len(want) < c.limit; i-- {
				if (c.before == 0 || all[i].nid < c.before) && (!c.highlight || all[i].hl) {
					want = append(want, all[i].nid)
				}
			}
			list, err := p.Notifications(ctx, "@a:hs", c.before, c.limit, c.highlight)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, n := range list {
				got = append(got, n.EventNID)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("before %d limit %d highlight %v:\n got %v\nwant %v", c.before, c.limit, c.highlight, got, want)
			}
		}
	})
}
