package notifications_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"myelin/notifications"
	"myelin/roomserver"
	"myelin/storage"
)

// TestCountCacheMatchesStore drives a room through messages, mentions,
// thread replies, receipts (unthreaded and threaded) and a member leaving
// and rejoining, reading counts after every step through the service
// (which counts only rows since its cached position) and straight from
// storage (which counts everything): they must agree at every step.
func TestCountCacheMatchesStore(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		room := e.room(bob, carol)
		other := e.room(bob)
		rooms := []string{room, other}
		store := storage.NewPush(e.db)
		members := map[string]bool{alice: true, bob: true, carol: true}
		var events []string
		root := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"root"}`)
		events = append(events, root)
		rnd := rand.New(rand.NewPCG(7, 11))
		check := func(step int, what string) {
			t.Helper()
			for _, u := range []string{bob, carol} {
				cached, err := e.n.UnreadCounts(ctx, u, rooms, true)
				if err != nil {
					t.Fatal(err)
				}
				direct, err := store.UnreadCounts(ctx, u, rooms)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := flatten(cached), flattenRows(direct); got != want {
					t.Fatalf("step %d (%s), %s: cached %s, storage %s", step, what, u, got, want)
				}
			}
		}
		check(0, "start")
		for step := 1; step <= 60; step++ {
			var what string
			switch k := rnd.IntN(10); {
			case k < 4:
				sender := []string{alice, bob, carol}[rnd.IntN(3)]
				if !members[sender] {
					sender = alice
				}
				body := `{"msgtype":"m.text","body":"m` + fmt.Sprint(step) + `"}`
				if k == 0 {
					body = `{"msgtype":"m.text","body":"hey","m.mentions":{"user_ids":["` + bob + `","` + carol + `"]}}`
				}
				events = append(events, e.send(room, sender, "m.room.message", body))
				what = "message"
			case k < 6:
				events = append(events, e.send(room, alice, "m.room.message",
					`{"msgtype":"m.text","body":"r","m.relates_to":{"rel_type":"m.thread","event_id":"`+root+`"}}`))
				what = "thread reply"
			case k < 7:
				e.send(other, alice, "m.room.message", `{"msgtype":"m.text","body":"o"}`)
				what = "other room"
			case k < 9:
				u := []string{bob, carol}[rnd.IntN(2)]
				if !members[u] {
					continue
				}
				ev := events[rnd.IntN(len(events))]
				var thread *string
				if k == 8 {
					th := []string{"main", root}[rnd.IntN(2)]
					thread = &th
				}
				if err := e.sync.PostReceipt(ctx, u, room, "m.read", ev, thread); err != nil {
					t.Fatal(err)
				}
				what = "receipt"
			default:
				if members[carol] {
					if _, err := e.rooms.Leave(ctx, roomserver.MembershipRequest{RoomID: room, Sender: carol}); err != nil {
						t.Fatal(err)
					}
					what = "carol leaves"
				} else {
					if _, err := e.rooms.Join(ctx, roomserver.MembershipRequest{RoomID: room, Sender: carol}); err != nil {
						t.Fatal(err)
					}
					what = "carol rejoins"
				}
				members[carol] = !members[carol]
			}
			check(step, what)
		}
	})
}

func flatten(c map[string]notifications.Counts) string {
	var parts []string
	for room, rc := range c {
		if rc.Notification != 0 || rc.Highlight != 0 {
			parts = append(parts, fmt.Sprintf("%s main %d/%d", room, rc.Notification, rc.Highlight))
		}
		for th, tc := range rc.Threads {
			parts = append(parts, fmt.Sprintf("%s %s %d/%d", room, th, tc.Notification, tc.Highlight))
		}
	}
	slices.Sort(parts)
	return fmt.Sprint(parts)
}

func flattenRows(rows []storage.UnreadCount) string {
	sum := map[string][2]int64{}
	for _, r := range rows {
		k := r.RoomID + " " + r.ThreadID
		v := sum[k]
		sum[k] = [2]int64{v[0] + r.Notifications, v[1] + r.Highlight}
	}
	var parts []string
	for k, v := range sum {
		if v[0] != 0 || v[1] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", k, v[0], v[1]))
		}
	}
	slices.Sort(parts)
	return fmt.Sprint(parts)
}
