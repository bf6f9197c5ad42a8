package storage_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"myelin/storage"
	"myelin/storage/storagetest"
)

// migrationsUpTo is an engine's migration files numbered at most last.
func migrationsUpTo(t *testing.T, dir string, last int) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if err != nil || v > last {
			continue
		}
		body, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = &fstest.MapFile{Data: body}
	}
	return out
}

// openUpTo opens a throwaway database of engine ("sqlite" or "postgres")
// migrated with that engine's files numbered at most last.
func openUpTo(t *testing.T, engine string, last int) *storage.DB {
	t.Helper()
	db := storagetest.Open(t, engine, 4)
	if err := storage.New(db.Engine, db.W, db.R, migrationsUpTo(t, engine+"/migrations", last)).Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestCompactNotificationsMigration upgrades a database holding rows of
// the old push_notifications layout (0030) and queued pushes (0032) with
// 0033 and checks that counts, the list and the queue read them back.
func TestCompactNotificationsMigration(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db := openUpTo(t, engine, 32)
			exec := func(query string, args ...any) {
				t.Helper()
				if _, err := db.W.ExecContext(ctx, query, args...); err != nil {
					t.Fatal(err)
				}
			}
			exec(`INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid) VALUES (7, '!r:hs', '12', '@c:hs', 0, 0, 0, 0)`)
			exec(`INSERT INTO events (event_nid, room_nid, event_id, type, state_key, sender, depth, origin_ts, state_group, json) VALUES (3, 7, '$e3', 'm.room.message', NULL, '@c:hs', 3, 1234, 0, '{}')`)
			exec(`INSERT INTO push_notifications (user_id, event_nid, room_id, thread_id, highlight, actions, ts) VALUES
				('@a:hs', 1, '!r:hs', 'main', 0, '["notify"]', 11),
				('@a:hs', 2, '!r:hs', '$root', 1, '["notify",{"set_tweak":"highlight"}]', 12),
				('@a:hs', 3, '!r:hs', 'main', 0, '["notify",{"set_tweak":"sound","value":"default"}]', 1234),
				('@b:hs', 3, '!r:hs', 'main', 0, '["notify"]', 1234),
				('@a:hs', 4, '!gone:hs', 'main', 0, '["notify"]', 14)`)
			exec(`INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts)
				VALUES ('@a:hs', 'app', 'k', 'http', '', '', '', 'en', '{"url":"https://gw.example/_matrix/push/v1/notify"}', 5)`)
			exec(`INSERT INTO push_queue (app_id, pushkey, user_id, event_nid, enqueued_ts, attempts) VALUES ('app', 'k', '@a:hs', 2, 99, 1), ('app', 'k', '@a:hs', 3, 99, 0)`)

			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			p, q := storage.NewPush(db), storage.NewPushQueue(db)
			cs, err := p.UnreadCounts(ctx, "@a:hs", []string{"!r:hs"})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range cs {
				got[c.RoomID+"/"+c.ThreadID] = fmt.Sprintf("%d/%d", c.Notifications, c.Highlight)
			}
			if fmt.Sprint(got) != "map[!r:hs/$root:1/1 !r:hs/main:2/0]" {
				t.Fatalf("counts after upgrade %v", got)
			}
			list, err := p.Notifications(ctx, "@a:hs", 0, 10, false)
			if err != nil {
				t.Fatal(err)
			}
			var rows []string
			for _, n := range list {
				rows = append(rows, fmt.Sprintf("%d %s %s %v %s %d", n.EventNID, n.RoomID, n.ThreadID, n.Highlight, n.Actions, n.TS))
			}
			want := []string{
				`3 !r:hs main false ["notify",{"set_tweak":"sound","value":"default"}] 1234`,
				`2 !r:hs $root true ["notify",{"set_tweak":"highlight"}] 0`,
				`1 !r:hs main false ["notify"] 0`,
			}
			if fmt.Sprint(rows) != fmt.Sprint(want) {
				t.Fatalf("list after upgrade\n got %q\nwant %q", rows, want)
			}
			k := storage.PusherKey{UserID: "@a:hs", AppID: "app", PushKey: "k"}
			next, err := q.Next(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if next.EventNID != 2 || next.Attempts != 1 || next.RoomID != "!r:hs" || !next.Highlight || string(next.Actions) != `["notify",{"set_tweak":"highlight"}]` {
				t.Fatalf("queued push after upgrade %+v", next)
			}
			// The rebuilt queue's foreign keys hold: a pusher's deliveries
			// still go with it.
			if err := q.RemovePusher(ctx, k); err != nil {
				t.Fatal(err)
			}
			var queued int
			if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_queue`).Scan(&queued); err != nil || queued != 0 {
				t.Fatalf("queue after removing its pusher: %d %v", queued, err)
			}
			// (0033's foreign key from a delivery to its notification row
			// is gone since 0034: a shared notification has no such row.
			// TestSharedNotificationsMigration covers the rebuilt queue.)
			// A replayed batch of an upgraded row is not counted twice.
			if err := p.StoreNotifications(ctx, "notifications", 3, []storage.Notification{{UserID: "@b:hs", EventNID: 3, RoomID: "!r:hs", ThreadID: "main", Actions: []byte(`["notify"]`)}}); err != nil {
				t.Fatal(err)
			}
			if cs, err := p.UnreadCounts(ctx, "@b:hs", []string{"!r:hs"}); err != nil || len(cs) != 1 || cs[0].Notifications != 1 {
				t.Fatalf("b's counts %+v %v", cs, err)
			}
		})
	}
}

// TestSharedNotificationsMigration upgrades a database of the 0033 layout
// with 0034: rows stored before still count and queue, joined local users
// get their open join span (remote and departed users none), and a shared
// row stored after counts for the backfilled member.
func TestSharedNotificationsMigration(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db := openUpTo(t, engine, 33)
			exec := func(query string, args ...any) {
				t.Helper()
				if _, err := db.W.ExecContext(ctx, query, args...); err != nil {
					t.Fatal(err)
				}
			}
			exec(`INSERT INTO users (localpart, created_ts) VALUES ('a', 0), ('c', 0)`)
			exec(`INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid) VALUES
				(7, '!r:hs', '12', '@c:hs', 0, 0, 0, 0), (8, '!gone:hs', '12', '@c:hs', 0, 0, 0, 0)`)
			exec(`INSERT INTO room_members (room_nid, user_id, membership, event_nid) VALUES
				(7, '@a:hs', 'join', 1), (7, '@b:remote', 'join', 2), (8, '@a:hs', 'leave', 4), (7, '@c:hs', 'invite', 3)`)
			exec(`INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions) VALUES
				('@a:hs', 7, 2, NULL, 0, NULL), ('@a:hs', 7, 3, NULL, 1, '["notify",{"set_tweak":"highlight"}]')`)
			exec(`INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts)
				VALUES ('@a:hs', 'app', 'k', 'http', '', '', '', 'en', '{}', 5)`)
			exec(`INSERT INTO push_queue (app_id, pushkey, user_id, room_nid, event_nid, enqueued_ts, attempts) VALUES ('app', 'k', '@a:hs', 7, 3, 99, 2)`)

			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			rows, err := db.R.QueryContext(ctx, `SELECT user_id, room_nid, from_nid, COALESCE(to_nid, 0) FROM push_member_spans ORDER BY user_id, room_nid`)
			if err != nil {
				t.Fatal(err)
			}
			var spans []string
			for rows.Next() {
				var u string
				var room, from, to int64
				if err := rows.Scan(&u, &room, &from, &to); err != nil {
					t.Fatal(err)
				}
				spans = append(spans, fmt.Sprintf("%s %d [%d,%d)", u, room, from, to))
			}
			rows.Close()
			if fmt.Sprint(spans) != "[@a:hs 7 [1,0)]" {
				t.Fatalf("backfilled spans %v", spans)
			}
			p, q := storage.NewPush(db), storage.NewPushQueue(db)
			counts := func(u string) string {
				t.Helper()
				cs, err := p.UnreadCounts(ctx, u, []string{"!r:hs"})
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, c := range cs {
					out = append(out, fmt.Sprintf("%s/%s=%d/%d", c.RoomID, c.ThreadID, c.Notifications, c.Highlight))
				}
				return fmt.Sprint(out)
			}
			if got := counts("@a:hs"); got != "[!r:hs/main=2/1]" {
				t.Fatalf("counts after upgrade %s", got)
			}
			if err := p.StoreBatch(ctx, "notifications", 5, storage.NotificationBatch{Shared: []storage.SharedNotification{
				{RoomID: "!r:hs", EventNID: 5, ThreadID: "main", Sender: "@c:hs", Notified: []string{"@a:hs"}},
			}}); err != nil {
				t.Fatal(err)
			}
			if got := counts("@a:hs"); got != "[!r:hs/main=3/1]" {
				t.Fatalf("counts with a shared row %s", got)
			}
			k := storage.PusherKey{UserID: "@a:hs", AppID: "app", PushKey: "k"}
			next, err := q.Next(ctx, k)
			if err != nil || next.EventNID != 3 || next.Attempts != 2 || !next.Highlight {
				t.Fatalf("queued push after upgrade %+v %v", next, err)
			}
			var queued int
			if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_queue`).Scan(&queued); err != nil || queued != 2 {
				t.Fatalf("queue with a shared delivery: %d %v", queued, err)
			}
			// A pusher's deliveries (old and shared ones) still go with it.
			if err := q.RemovePusher(ctx, k); err != nil {
				t.Fatal(err)
			}
			if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_queue`).Scan(&queued); err != nil || queued != 0 {
				t.Fatalf("queue after removing its pusher: %d %v", queued, err)
			}
		})
	}
}
