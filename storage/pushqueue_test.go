package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"myelin/storage"
)

func TestPushQueue(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p, q := storage.NewPush(db), storage.NewPushQueue(db)
		storeRoom(t, db, 100, "!r:hs")
		pusher := func(user, app, key, kind string) storage.PusherKey {
			t.Helper()
			ps := storage.Pusher{UserID: user, AppID: app, PushKey: key, Kind: kind, Data: []byte(`{"url":"https://gw.example/_matrix/push/v1/notify"}`), CreatedTS: 7000}
			if err := p.SetPusher(ctx, ps, true); err != nil {
				t.Fatal(err)
			}
			return storage.PusherKey{UserID: user, AppID: app, PushKey: key}
		}
		a1 := pusher("@a:hs", "app", "k1", "http")
		a2 := pusher("@a:hs", "app", "k2", "http")
		pusher("@a:hs", "m.email", "a@example.org", "email") // not an HTTP pusher: never queued
		n := func(user string, nid int64, hl bool) storage.Notification {
			return storage.Notification{UserID: user, EventNID: nid, RoomID: "!r:hs", ThreadID: "main", Highlight: hl, Actions: []byte(`["notify"]`), TS: nid}
		}
		batch := []storage.Notification{n("@a:hs", 1, false), n("@a:hs", 2, true), n("@b:hs", 3, false)}
		if err := p.StoreNotifications(ctx, "notifications", 3, batch); err != nil {
			t.Fatal(err)
		}
		pending := func() string {
			t.Helper()
			ps, err := q.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, x := range ps {
				out = append(out, fmt.Sprintf("%s/%s=%d", x.UserID, x.PushKey, x.Queued))
			}
			sort.Strings(out)
			return fmt.Sprint(out)
		}
		if got := pending(); got != "[@a:hs/k1=2 @a:hs/k2=2]" {
			t.Fatalf("pending %s", got)
		}

		// A replayed batch queues nothing twice, even after a delivery.
		first, err := q.Next(ctx, a1)
		if err != nil {
			t.Fatal(err)
		}
		if first.EventNID != 1 || first.Kind != "http" || first.RoomID != "!r:hs" || first.Highlight || string(first.Actions) != `["notify"]` ||
			first.CreatedTS != 7000 || first.Attempts != 0 || first.EnqueuedTS == 0 || string(first.Data) != `{"url":"https://gw.example/_matrix/push/v1/notify"}` {
			t.Fatalf("next %+v", first)
		}
		if err := q.Done(ctx, a1, 1); err != nil {
			t.Fatal(err)
		}
		if err := p.StoreNotifications(ctx, "notifications", 3, batch); err != nil {
			t.Fatal(err)
		}
		if got := pending(); got != "[@a:hs/k1=1 @a:hs/k2=2]" {
			t.Fatalf("pending after replay %s", got)
		}

		// Failed attempts are counted on the row.
		for want := 1; want <= 2; want++ {
			got, err := q.Failed(ctx, a1, 2)
			if err != nil || got != want {
				t.Fatalf("Failed = %d %v, want %d", got, err, want)
			}
		}
		next, err := q.Next(ctx, a1)
		if err != nil || next.EventNID != 2 || !next.Highlight || next.Attempts != 2 {
			t.Fatalf("next %+v %v", next, err)
		}
		if _, err := q.Failed(ctx, a1, 99); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Failed on a missing row: %v", err)
		}
		if err := q.Done(ctx, a1, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Next(ctx, a1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("empty queue: %v", err)
		}

		// Old rows are dropped by age.
		if n, err := q.DropOlder(ctx, a2, 0); err != nil || n != 0 {
			t.Fatalf("DropOlder(0) = %d %v", n, err)
		}
		if n, err := q.DropOlder(ctx, a2, first.EnqueuedTS+1); err != nil || n != 2 {
			t.Fatalf("DropOlder = %d %v", n, err)
		}

		// A rejected pusher goes, with its queue; so does one its user removes.
		if err := p.StoreNotifications(ctx, "notifications", 5, []storage.Notification{n("@a:hs", 4, false), n("@a:hs", 5, false)}); err != nil {
			t.Fatal(err)
		}
		if got := pending(); got != "[@a:hs/k1=2 @a:hs/k2=2]" {
			t.Fatalf("pending %s", got)
		}
		if err := q.RemovePusher(ctx, a2); err != nil {
			t.Fatal(err)
		}
		if got := pending(); got != "[@a:hs/k1=2]" {
			t.Fatalf("pending after rejection %s", got)
		}
		ps, _ := p.Pushers(ctx, "@a:hs")
		if len(ps) != 2 || ps[0].PushKey == "k2" || ps[1].PushKey == "k2" {
			t.Fatalf("pushers after rejection %+v", ps)
		}
		if err := p.DeletePusher(ctx, "@a:hs", "app", "k1"); err != nil {
			t.Fatal(err)
		}
		if got := pending(); got != "[]" {
			t.Fatalf("pending after deletion %s", got)
		}
	})
}

func TestPushUnreadTotal(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p, q := storage.NewPush(db), storage.NewPushQueue(db)
		exec := func(query string, args ...any) {
			t.Helper()
			if _, err := db.W.ExecContext(ctx, query, args...); err != nil {
				t.Fatal(err)
			}
		}
		for i, room := range []string{"!joined:hs", "!invited:hs", "!left:hs"} {
			exec(`INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid) VALUES ($1, $2, '12', '@c:hs', 0, 0, 0, 0)`, i+1, room)
		}
		exec(`INSERT INTO room_members (room_nid, user_id, membership, event_nid) VALUES (1, '@a:hs', 'join', 1), (2, '@a:hs', 'invite', 2), (3, '@a:hs', 'leave', 3)`)
		var ns []storage.Notification
		for nid := int64(10); nid < 16; nid++ {
			room := []string{"!joined:hs", "!invited:hs", "!left:hs"}[nid%3]
			ns = append(ns, storage.Notification{UserID: "@a:hs", EventNID: nid, RoomID: room, ThreadID: "main", Actions: []byte(`["notify"]`), TS: nid})
		}
		if err := p.StoreNotifications(ctx, "notifications", 16, ns); err != nil {
			t.Fatal(err)
		}
		total := func() int64 {
			t.Helper()
			n, err := q.UnreadTotal(ctx, "@a:hs")
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		// 12 and 15 in the joined room, 10 and 13 in the invited one; the
		// left room's 11 and 14 do not count.
		if got := total(); got != 4 {
			t.Fatalf("unread total %d, want 4", got)
		}
		exec(`INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos) VALUES ('!joined:hs', 'm.read', '@a:hs', '', 'x', 12, 0, 1)`)
		if got := total(); got != 3 {
			t.Fatalf("unread total after a receipt %d, want 3", got)
		}
		if n, err := q.UnreadTotal(ctx, "@nobody:hs"); err != nil || n != 0 {
			t.Fatalf("nobody: %d %v", n, err)
		}
	})
}

// TestPushQueueFirstPusherAfterNone: notification batches skip the pusher
// lookup once they found no HTTP pusher at all; a pusher set afterwards
// is still queued for, also after a deletion and a new one.
func TestPushQueueFirstPusherAfterNone(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p, q := storage.NewPush(db), storage.NewPushQueue(db)
		storeRoom(t, db, 100, "!r:hs")
		n := func(nid int64) []storage.Notification {
			return []storage.Notification{{UserID: "@a:hs", EventNID: nid, RoomID: "!r:hs", ThreadID: "main", Actions: []byte(`["notify"]`), TS: nid}}
		}
		queued := func() int64 {
			t.Helper()
			ps, err := q.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, x := range ps {
				total += x.Queued
			}
			return total
		}
		if err := p.StoreNotifications(ctx, "notifications", 1, n(1)); err != nil {
			t.Fatal(err)
		}
		if got := queued(); got != 0 {
			t.Fatalf("queued %d with no pusher", got)
		}
		ps := storage.Pusher{UserID: "@a:hs", AppID: "app", PushKey: "k", Kind: "http", Data: []byte(`{"url":"https://gw.example/_matrix/push/v1/notify"}`), CreatedTS: 7}
		if err := p.SetPusher(ctx, ps, true); err != nil {
			t.Fatal(err)
		}
		if err := p.StoreNotifications(ctx, "notifications", 2, n(2)); err != nil {
			t.Fatal(err)
		}
		if got := queued(); got != 1 {
			t.Fatalf("queued %d after the first pusher, want 1", got)
		}
		// Deleting the pusher and adding it back still queues.
		if err := p.DeletePusher(ctx, "@a:hs", "app", "k"); err != nil {
			t.Fatal(err)
		}
		if err := p.SetPusher(ctx, ps, true); err != nil {
			t.Fatal(err)
		}
		if err := p.StoreNotifications(ctx, "notifications", 3, n(3)); err != nil {
			t.Fatal(err)
		}
		if got := queued(); got != 1 {
			// The deletion took the pusher's queue with it.
			t.Fatalf("queued %d after re-adding the pusher, want 1", got)
		}
	})
}
