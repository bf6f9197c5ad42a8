package storage_test

import (
	"context"
	"fmt"
	"testing"

	"myelin/storage"
)

// sharedModel is a deterministic history of three rooms seen by user @u:
// membership events move u's join spans, the other events are shared
// notifications (some skipping u, some sent by u) or explicit rows of u.
// The reads are checked against the plain definition computed here.
type sharedEvent struct {
	nid      int64
	room     string
	thread   string
	sender   string
	member   string // membership event of u: "join" or "leave"
	skipU    bool   // shared, but not a plain notification for u
	explicit bool   // u also (or only) has an explicit row
	hl       bool   // the explicit row is a highlight
	shared   bool
}

const modelUser = "@u:hs"

var modelRooms = []string{"!a:hs", "!b:hs", "!c:hs"}

func sharedHistory() []sharedEvent {
	var evs []sharedEvent
	for nid := int64(1); nid <= 150; nid++ {
		ev := sharedEvent{nid: nid, room: modelRooms[nid%3], thread: "main", sender: "@x:hs"}
		switch {
		// u joins !a at 3, leaves at 63, rejoins at 93; joins !b at 31 and
		// leaves at 121, and never joins !c.
		case nid == 3 || nid == 93:
			ev.room, ev.member, ev.sender = "!a:hs", "join", modelUser
		case nid == 63:
			ev.room, ev.member, ev.sender = "!a:hs", "leave", modelUser
		case nid == 31:
			ev.room, ev.member, ev.sender = "!b:hs", "join", modelUser
		case nid == 121:
			ev.room, ev.member, ev.sender = "!b:hs", "leave", "@x:hs" // a kick
		case nid == 96: // a profile change: join→join
			ev.room, ev.member, ev.sender = "!a:hs", "join", modelUser
		case nid%11 == 0: // a mention of u: explicit highlight, shared for others
			ev.shared, ev.skipU, ev.explicit, ev.hl = true, true, true, true
		case nid%13 == 0: // u muted it
			ev.shared, ev.skipU = true, true
		case nid%17 == 0: // nobody got a plain notification: explicit only
			ev.explicit = true
		case nid%7 == 0:
			ev.shared, ev.sender = true, modelUser
		default:
			ev.shared = true
			if nid%5 == 0 {
				ev.thread = "$t"
			}
		}
		evs = append(evs, ev)
	}
	return evs
}

// counted reports whether ev notified u, and how (per the joined spans).
func counted(evs []sharedEvent, ev sharedEvent) (notified, highlight bool) {
	if ev.explicit {
		return true, ev.hl
	}
	if !ev.shared || ev.skipU || ev.sender == modelUser {
		return false, false
	}
	joined := false
	for _, m := range evs {
		if m.nid > ev.nid {
			break
		}
		if m.member != "" && m.room == ev.room {
			joined = m.member == "join"
		}
	}
	return joined, false
}

// sharedBatch is the consumer batch of evs.
func sharedBatch(evs []sharedEvent) storage.NotificationBatch {
	var b storage.NotificationBatch
	for _, ev := range evs {
		if ev.member != "" {
			b.Memberships = append(b.Memberships, storage.JoinChange{RoomID: ev.room, UserID: modelUser, EventNID: ev.nid, Joined: ev.member == "join"})
			continue
		}
		if ev.explicit {
			acts := `["notify"]`
			if ev.hl {
				acts = `["notify",{"set_tweak":"highlight"}]`
			}
			b.Explicit = append(b.Explicit, storage.Notification{UserID: modelUser, EventNID: ev.nid, RoomID: ev.room, ThreadID: ev.thread, Highlight: ev.hl, Actions: []byte(acts)})
		}
		if ev.shared {
			s := storage.SharedNotification{RoomID: ev.room, EventNID: ev.nid, ThreadID: ev.thread, Sender: ev.sender, Notified: []string{"@o:hs"}}
			if ev.skipU {
				s.Skipped = []string{modelUser}
			}
			b.Shared = append(b.Shared, s)
		}
	}
	return b
}

func TestSharedNotificationsReads(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := storage.NewPush(db)
		for i, r := range modelRooms {
			storeRoom(t, db, int64(i+1), r)
		}
		evs := sharedHistory()
		// Batches of 20; the third is committed twice (a replay after a
		// crash between the commit and the consumer's memory).
		for start := 0; start < len(evs); start += 20 {
			chunk := evs[start:min(start+20, len(evs))]
			times := 1
			if start == 40 {
				times = 2
			}
			for range times {
				if err := p.StoreBatch(ctx, "notifications", chunk[len(chunk)-1].nid, sharedBatch(chunk)); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Receipts: !a read up to 100 unthreaded; !b's thread $t read up to 130.
		if _, err := db.W.ExecContext(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
			VALUES ('!a:hs', 'm.read', $1, '', 'x', 100, 0, 1), ('!b:hs', 'm.read.private', $1, '$t', 'y', 130, 0, 2)`, modelUser); err != nil {
			t.Fatal(err)
		}
		type item struct {
			nid int64
			hl  bool
		}
		var all []item
		wantCounts := map[string][2]int64{}
		for _, ev := range evs {
			ok, hl := counted(evs, ev)
			if !ok {
				continue
			}
			all = append(all, item{ev.nid, hl})
			read := (ev.room == "!a:hs" && ev.nid <= 100) || (ev.room == "!b:hs" && ev.thread == "$t" && ev.nid <= 130)
			if read {
				continue
			}
			c := wantCounts[ev.room+"/"+ev.thread]
			c[0]++
			if hl {
				c[1]++
			}
			wantCounts[ev.room+"/"+ev.thread] = c
		}
		cs, err := p.UnreadCounts(ctx, modelUser, modelRooms)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][2]int64{}
		for _, c := range cs {
			got[c.RoomID+"/"+c.ThreadID] = [2]int64{c.Notifications, c.Highlight}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantCounts) {
			t.Fatalf("unread counts\n got %v\nwant %v", got, wantCounts)
		}
		for _, c := range []struct {
			before    int64
			limit     int
			highlight bool
		}{
			{0, 1, false}, {0, 10, false}, {0, 20, false}, {0, 500, false},
			{120, 7, false}, {64, 10, false}, {35, 20, false}, {4, 5, false},
			{0, 3, true}, {80, 4, true}, {0, 100, true},
		} {
			var want []string
			for i := len(all) - 1; i >= 0 && len(want) < c.limit; i-- {
				if (c.before == 0 || all[i].nid < c.before) && (!c.highlight || all[i].hl) {
					want = append(want, fmt.Sprintf("%d:%v", all[i].nid, all[i].hl))
				}
			}
			list, err := p.Notifications(ctx, modelUser, c.before, c.limit, c.highlight)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range list {
				got = append(got, fmt.Sprintf("%d:%v", n.EventNID, n.Highlight))
				if !n.Highlight && n.EventNID%17 != 0 && string(n.Actions) != `["notify"]` {
					t.Errorf("shared row %d actions %s", n.EventNID, n.Actions)
				}
				if wantRead := n.RoomID == "!a:hs" && n.EventNID <= 100; n.Read != wantRead && n.RoomID == "!a:hs" {
					t.Errorf("row %d read %v", n.EventNID, n.Read)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("before %d limit %d highlight %v:\n got %v\nwant %v", c.before, c.limit, c.highlight, got, want)
			}
		}
		// The sender and a user who never joined count nothing.
		if cs, err := p.UnreadCounts(ctx, "@x:hs", modelRooms); err != nil || len(cs) != 0 {
			t.Fatalf("sender's counts %v %v", cs, err)
		}
	})
}

// TestSharedNotificationsQueue: a user with an HTTP pusher gets one queued
// delivery per shared notification, Next returns it as a plain ["notify"],
// a replayed batch queues nothing twice, and UnreadTotal counts shared rows.
func TestSharedNotificationsQueue(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p, q := storage.NewPush(db), storage.NewPushQueue(db)
		storeRoom(t, db, 1, "!r:hs")
		if _, err := db.W.ExecContext(ctx, `INSERT INTO room_members (room_nid, user_id, membership, event_nid) VALUES (1, '@a:hs', 'join', 1), (1, '@b:hs', 'join', 1)`); err != nil {
			t.Fatal(err)
		}
		if err := p.SetPusher(ctx, storage.Pusher{UserID: "@a:hs", AppID: "app", PushKey: "k", Kind: "http", Data: []byte(`{"url":"https://gw.example/_matrix/push/v1/notify"}`), CreatedTS: 1}, true); err != nil {
			t.Fatal(err)
		}
		k := storage.PusherKey{UserID: "@a:hs", AppID: "app", PushKey: "k"}
		b := storage.NotificationBatch{
			Memberships: []storage.JoinChange{{RoomID: "!r:hs", UserID: "@a:hs", EventNID: 1, Joined: true}, {RoomID: "!r:hs", UserID: "@b:hs", EventNID: 1, Joined: true}},
			Shared: []storage.SharedNotification{
				{RoomID: "!r:hs", EventNID: 2, ThreadID: "main", Sender: "@c:hs", Notified: []string{"@a:hs", "@b:hs"}},
				{RoomID: "!r:hs", EventNID: 3, ThreadID: "main", Sender: "@c:hs", Notified: []string{"@b:hs"}, Skipped: []string{"@a:hs"}},
			},
			Explicit: []storage.Notification{{UserID: "@a:hs", EventNID: 3, RoomID: "!r:hs", ThreadID: "main", Highlight: true, Actions: []byte(`["notify",{"set_tweak":"highlight"}]`)}},
		}
		for range 2 {
			if err := p.StoreBatch(ctx, "notifications", 3, b); err != nil {
				t.Fatal(err)
			}
		}
		var queued int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_queue`).Scan(&queued); err != nil || queued != 2 {
			t.Fatalf("queued %d %v, want 2", queued, err)
		}
		var got []string
		for range 2 {
			next, err := q.Next(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d %s %v %s", next.EventNID, next.RoomID, next.Highlight, next.Actions))
			if err := q.Done(ctx, k, next.EventNID); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{`2 !r:hs false ["notify"]`, `3 !r:hs true ["notify",{"set_tweak":"highlight"}]`}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("deliveries\n got %q\nwant %q", got, want)
		}
		for _, c := range []struct {
			user string
			want int64
		}{{"@a:hs", 2}, {"@b:hs", 2}, {"@c:hs", 0}} {
			if n, err := q.UnreadTotal(ctx, c.user); err != nil || n != c.want {
				t.Errorf("%s unread total %d %v, want %d", c.user, n, err, c.want)
			}
		}
	})
}

// TestSharedSpansReplay: membership events replayed over spans that
// migration 0034 backfilled from room_members (the consumer was behind)
// end in the same spans as a consumer that saw them in order.
func TestSharedSpansReplay(t *testing.T) {
	type change struct {
		nid  int64
		join bool
	}
	for _, c := range []struct {
		name     string
		backfill int64 // the backfilled open span's start (0: none)
		changes  []change
		want     string
	}{
		{"in order", 0, []change{{5, true}, {10, false}, {15, true}}, "[5-10 15-]"},
		{"profile change", 0, []change{{5, true}, {8, true}}, "[5-]"},
		{"leave without a span", 0, []change{{5, false}}, "[]"},
		{"behind a rejoin", 15, []change{{5, true}, {10, false}, {15, true}}, "[5-10 15-]"},
		{"behind a profile change", 8, []change{{5, true}, {8, true}}, "[5-]"},
		{"replay of the current join", 5, []change{{5, true}}, "[5-]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			eachEngine(t, func(t *testing.T, db *storage.DB) {
				ctx := context.Background()
				p := storage.NewPush(db)
				storeRoom(t, db, 1, "!r:hs")
				if c.backfill > 0 {
					if _, err := db.W.ExecContext(ctx, `INSERT INTO push_member_spans (user_id, room_nid, from_nid, to_nid) VALUES ('@a:hs', 1, $1, NULL)`, c.backfill); err != nil {
						t.Fatal(err)
					}
				}
				var b storage.NotificationBatch
				for _, ch := range c.changes {
					b.Memberships = append(b.Memberships, storage.JoinChange{RoomID: "!r:hs", UserID: "@a:hs", EventNID: ch.nid, Joined: ch.join})
				}
				if err := p.StoreBatch(ctx, "notifications", 20, b); err != nil {
					t.Fatal(err)
				}
				rows, err := db.R.QueryContext(ctx, `SELECT from_nid, COALESCE(to_nid, 0) FROM push_member_spans WHERE user_id = '@a:hs' ORDER BY from_nid`)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var got []string
				for rows.Next() {
					var from, to int64
					if err := rows.Scan(&from, &to); err != nil {
						t.Fatal(err)
					}
					s := fmt.Sprintf("%d-", from)
					if to > 0 {
						s += fmt.Sprint(to)
					}
					got = append(got, s)
				}
				if fmt.Sprint(got) != c.want {
					t.Fatalf("spans %v, want %s", got, c.want)
				}
			})
		})
	}
}
