package storage_test

import (
	"context"
	"fmt"
	"testing"

	"myelin/storage"
)

// BenchmarkNotificationsList measures the /notifications page query and
// the unread counts. The user has 200 rooms and 50,000 notifications, one
// in 50 a highlight, in two layouts: "explicit", every row in
// push_notifications (0033; the only B-tree keyed (user, room, event), so
// the newest page across rooms is not an index range), and "shared", the
// consumer's layout since 0034: plain notifications as push_shared rows
// read through the user's join spans, highlights explicit (and skipped in
// the shared row). One user sent every shared row: the worst case for
// PostgreSQL's estimate of the sender test (see sharedForUserSQL).
func BenchmarkNotificationsList(b *testing.B) {
	const rooms, rows = 200, 50000
	seq := func(n int) string {
		return fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) `, n)
	}
	layouts := []struct {
		name    string
		queries []string
	}{
		{"explicit", []string{
			seq(rows) + fmt.Sprintf(`INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions)
				SELECT '@a:hs', 1 + i %% %d, i, NULL, CASE WHEN i %% 50 = 0 THEN 1 ELSE 0 END, NULL FROM s`, rooms),
			// Other users' rows share the B-tree.
			seq(rows) + fmt.Sprintf(`INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions)
				SELECT '@b:hs', 1 + i %% %d, i, NULL, 0, NULL FROM s`, rooms),
		}},
		{"shared", []string{
			seq(rooms) + `INSERT INTO push_member_spans (user_id, room_nid, from_nid, to_nid) SELECT '@a:hs', i, 0, NULL FROM s`,
			seq(rooms) + `INSERT INTO push_member_spans (user_id, room_nid, from_nid, to_nid) SELECT '@b:hs', i, 0, NULL FROM s`,
			seq(rows) + fmt.Sprintf(`INSERT INTO push_shared (room_nid, event_nid, thread_id, sender) SELECT 1 + i %% %d, i, NULL, '@s:hs' FROM s`, rooms),
			seq(rows/50) + fmt.Sprintf(`INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions)
				SELECT '@a:hs', 1 + (50 * i) %% %d, 50 * i, NULL, 1, '["notify",{"set_tweak":"highlight"}]' FROM s`, rooms),
			seq(rows/50) + fmt.Sprintf(`INSERT INTO push_skips (user_id, room_nid, event_nid) SELECT '@a:hs', 1 + (50 * i) %% %d, 50 * i FROM s`, rooms),
		}},
	}
	for _, layout := range layouts {
		b.Run(layout.name, func(b *testing.B) { benchmarkNotificationsList(b, rooms, rows, layout.queries) })
	}
}

func benchmarkNotificationsList(b *testing.B, rooms, rows int, queries []string) {
	eachEngineB(b, func(b *testing.B, db *storage.DB) {
		ctx := context.Background()
		for _, q := range append([]string{
			fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
				INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid)
				SELECT i, '!r' || CAST(i AS TEXT) || ':hs', '12', '@c:hs', 0, 0, 0, 0 FROM s`, rooms),
		}, queries...) {
			if _, err := db.W.ExecContext(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		if db.Engine == storage.Postgres {
			if _, err := db.W.ExecContext(ctx, `ANALYZE`); err != nil {
				b.Fatal(err)
			}
		}
		p := storage.NewPush(db)
		roomIDs := make([]string, rooms)
		for i := range roomIDs {
			roomIDs[i] = fmt.Sprintf("!r%d:hs", i+1)
		}
		for _, c := range []struct {
			name      string
			before    int64
			highlight bool
			want      int
		}{
			{"newest", 0, false, 20},
			{"from", int64(rows / 2), false, 20},
			{"only_highlight", 0, true, 20},
		} {
			b.Run(c.name, func(b *testing.B) {
				for b.Loop() {
					list, err := p.Notifications(ctx, "@a:hs", c.before, 20, c.highlight)
					if err != nil || len(list) != c.want {
						b.Fatalf("%d rows, %v", len(list), err)
					}
				}
			})
		}
		b.Run("unread_counts_200_rooms", func(b *testing.B) {
			for b.Loop() {
				cs, err := p.UnreadCounts(ctx, "@a:hs", roomIDs)
				if err != nil || len(cs) != rooms {
					b.Fatalf("%d counts, %v", len(cs), err)
				}
			}
		})
		// The usual case: each room read up to its newest 5 rows.
		for i, r := range roomIDs {
			if _, err := db.W.ExecContext(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
				VALUES ($1, 'm.read', '@a:hs', '', 'x', $2, 0, $3)`, r, int64(rows-5*rooms+i), int64(i+1)); err != nil {
				b.Fatal(err)
			}
		}
		if db.Engine == storage.Postgres {
			if _, err := db.W.ExecContext(ctx, `ANALYZE`); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("unread_counts_200_rooms_mostly_read", func(b *testing.B) {
			for b.Loop() {
				cs, err := p.UnreadCounts(ctx, "@a:hs", roomIDs)
				if err != nil || len(cs) != rooms {
					b.Fatalf("%d counts, %v", len(cs), err)
				}
			}
		})
	})
}
