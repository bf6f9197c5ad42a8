package notifications_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"myelin/pushrules"
	"myelin/roomserver"
)

// TestSharedNotifications drives the consumer through the cases shared
// rows must get right: plain notifications are stored once per event, and
// each member's counts and list still follow their own rules and joins.
func TestSharedNotifications(t *testing.T) {
	dave, erin := user("dave"), user("erin")
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		room := e.room(bob, carol, dave)
		// Carol mutes the room (a room rule without actions).
		if err := e.n.EditRules(ctx, carol, func(u *pushrules.UserRules) error {
			return u.Put(pushrules.KindRoom, room, pushrules.NewRule{Actions: json.RawMessage(`[]`)}, "", "")
		}); err != nil {
			t.Fatal(err)
		}
		text := func(body string) string { return `{"msgtype":"m.text","body":"` + body + `"}` }
		membership := func(u string, join bool) {
			t.Helper()
			req := roomserver.MembershipRequest{RoomID: room, Sender: u}
			var err error
			if join {
				_, err = e.rooms.Join(ctx, req)
			} else {
				_, err = e.rooms.Leave(ctx, req)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		check := func(step string, want map[string]string) {
			t.Helper()
			for _, u := range []string{alice, bob, carol, dave, erin} {
				if w, ok := want[u]; ok {
					if got := e.counts(u, room); got != w {
						t.Errorf("%s: %s counts %s, want %s", step, u, got, w)
					}
				}
			}
		}
		m1 := e.send(room, alice, "m.room.message", text("one"))
		check("plain message", map[string]string{alice: "0/0", bob: "1/0", carol: "0/0", dave: "1/0"})
		m2 := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"bob?","m.mentions":{"user_ids":["`+bob+`"]}}`)
		check("a mention counts once, as a highlight", map[string]string{bob: "2/1", carol: "0/0", dave: "2/0"})
		membership(erin, true)
		m3 := e.send(room, alice, "m.room.message", text("three"))
		check("a late joiner counts only what follows the join", map[string]string{bob: "3/1", erin: "1/0", dave: "3/0"})
		membership(dave, false)
		m4 := e.send(room, alice, "m.room.message", text("four"))
		check("a member who left stops counting", map[string]string{dave: "3/0", bob: "4/1", erin: "2/0"})
		membership(dave, true)
		m5 := e.send(room, alice, "m.room.message", text("five"))
		check("a rejoin counts inside its spans only", map[string]string{dave: "4/0", bob: "5/1"})
		m6 := e.send(room, bob, "m.room.message", text("six"))
		check("the sender never counts their own message", map[string]string{bob: "5/1", dave: "5/0", alice: "1/0", carol: "0/0"})
		th := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"t","m.relates_to":{"rel_type":"m.thread","event_id":"`+m1+`"}}`)
		check("a threaded reply counts in its thread", map[string]string{bob: "5/1 " + m1 + ":1/0", dave: "5/0 " + m1 + ":1/0", carol: "0/0"})

		// Only bob's mention is a push_notifications row; the rest are one
		// shared row per message.
		var explicit, shared int
		if err := e.db.R.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM push_notifications), (SELECT COUNT(*) FROM push_shared)`).Scan(&explicit, &shared); err != nil {
			t.Fatal(err)
		}
		if explicit != 1 || shared != 7 {
			t.Errorf("rows: %d explicit, %d shared; want 1 and 7", explicit, shared)
		}

		// /notifications merges both kinds, newest first, paged with from.
		var got []string
		from := ""
		for range 10 {
			page, err := e.n.Notifications(ctx, roomserver.Viewer{UserID: bob}, from, 2, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range page.Notifications {
				got = append(got, fmt.Sprintf("%s %s", n.Event.EventID, n.Actions))
			}
			if from = page.NextToken; from == "" {
				break
			}
		}
		plain := `["notify"]`
		want := []string{th + " " + plain, m5 + " " + plain, m4 + " " + plain, m3 + " " + plain,
			m2 + ` ["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`, m1 + " " + plain}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("bob's notifications\n got %q\nwant %q", got, want)
		}
		page, err := e.n.Notifications(ctx, roomserver.Viewer{UserID: dave}, "", 10, false)
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for _, n := range page.Notifications {
			got = append(got, n.Event.EventID)
		}
		if want := []string{th, m6, m5, m3, m2, m1}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("dave's notifications\n got %q\nwant %q", got, want)
		}
	})
}
