package storage_test

import (
	"context"
	"fmt"
	"testing"

	"myelin/storage"
)

// BenchmarkNotificationsList measures the /notifications page query on
// the compact layout (0033), whose only B-tree is keyed (user, room,
// event): the newest page of a user across all their rooms is a read of
// the user's rows ordered by event position, not an index range. The user
// has 200 rooms and 50,000 notifications, one in 50 a highlight.
func BenchmarkNotificationsList(b *testing.B) {
	const rooms, rows = 200, 50000
	eachEngineB(b, func(b *testing.B, db *storage.DB) {
		ctx := context.Background()
		for _, q := range []string{
			fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
				INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid)
				SELECT i, '!r' || CAST(i AS TEXT) || ':hs', '12', '@c:hs', 0, 0, 0, 0 FROM s`, rooms),
			fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
				INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions)
				SELECT '@a:hs', 1 + i %% %d, i, NULL, CASE WHEN i %% 50 = 0 THEN 1 ELSE 0 END, NULL FROM s`, rows, rooms),
			// Other users' rows share the B-tree.
			fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
				INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions)
				SELECT '@b:hs', 1 + i %% %d, i, NULL, 0, NULL FROM s`, rows, rooms),
		} {
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
			{"from", rows / 2, false, 20},
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
	})
}
