package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"myelin/internal/testserver"
)

// unreadIn is a joined room's unread_notifications from a fresh sync.
func unreadIn(t *testing.T, u roomUser, room id.RoomID) mautrix.UnreadNotificationCounts {
	t.Helper()
	resp := syncWith(t, u.c, mautrix.ReqSync{})
	j, ok := resp.Rooms.Join[room]
	if !ok || j.UnreadNotifications == nil {
		t.Fatalf("room %s has no unread_notifications in sync", room)
	}
	return *j.UnreadNotifications
}

func ruleIDs(a pushrules.PushRuleArray) map[string]*pushrules.PushRule {
	out := map[string]*pushrules.PushRule{}
	for _, r := range a {
		out[r.RuleID] = r
	}
	return out
}

// TestPushRules drives /pushrules as a client does and checks that the rules
// decide /sync's unread counts and /notifications.
func TestPushRules(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Theatre"})
		if err != nil {
			t.Fatal(err)
		}
		// Three members, so the room is a group room: in a two-member room
		// .m.rule.room_one_to_one would match before .m.rule.message.
		carol := newRoomUser(t, srv, "carol")
		for _, u := range []roomUser{bob, carol} {
			if _, err := u.c.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
		}

		// The spec's default rule set.
		rs, err := bob.c.GetPushRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		over, under := ruleIDs(rs.Override), ruleIDs(rs.Underride)
		if m := over[".m.rule.master"]; m == nil || m.Enabled || !m.Default {
			t.Fatalf(".m.rule.master = %+v, want a disabled default rule", m)
		}
		for _, id := range []string{".m.rule.suppress_notices", ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.member_event"} {
			if over[id] == nil {
				t.Errorf("default override rule %s missing", id)
			}
		}
		for _, id := range []string{".m.rule.message", ".m.rule.room_one_to_one", ".m.rule.encrypted"} {
			if under[id] == nil {
				t.Errorf("default underride rule %s missing", id)
			}
		}

		// A keyword rule that highlights.
		highlight := []*pushrules.PushAction{{Action: pushrules.ActionNotify}, {Action: pushrules.ActionSetTweak, Tweak: pushrules.TweakHighlight, Value: true}}
		if err := bob.c.PutPushRule(ctx, "global", pushrules.ContentRule, "surgery", &mautrix.ReqPutPushRule{Pattern: "surgery", Actions: highlight}); err != nil {
			t.Fatal(err)
		}
		got, err := bob.c.GetPushRule(ctx, "global", pushrules.ContentRule, "surgery")
		if err != nil || got.Pattern != "surgery" || got.Default || !got.Enabled {
			t.Fatalf("GET rule = %+v, %v", got, err)
		}

		sendText(t, alice, room.RoomID, "lunch is in the staff room")
		sendText(t, alice, room.RoomID, "surgery moved to 3pm")
		waitUnread(t, bob, room.RoomID, mautrix.UnreadNotificationCounts{NotificationCount: 2, HighlightCount: 1})

		resp := srv.Do(t, http.MethodGet, "/_matrix/client/v3/notifications?only=highlight", bob.Token, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("/notifications: %d %s", resp.Status, resp.Body)
		}
		var notifs struct {
			Notifications []struct {
				RoomID string         `json:"room_id"`
				Event  map[string]any `json:"event"`
			} `json:"notifications"`
		}
		if err := json.Unmarshal(resp.Body, &notifs); err != nil {
			t.Fatal(err)
		}
		if len(notifs.Notifications) != 1 || notifs.Notifications[0].RoomID != string(room.RoomID) {
			t.Fatalf("highlight notifications = %+v", notifs.Notifications)
		}

		// Turning the catch-all message rule off stops plain messages counting.
		if r := srv.DoJSON(t, http.MethodPut, "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled", bob.Token, map[string]bool{"enabled": false}); r.Status != http.StatusOK {
			t.Fatalf("disable .m.rule.message: %d %s", r.Status, r.Body)
		}
		last := sendText(t, alice, room.RoomID, "nothing to see")
		time.Sleep(200 * time.Millisecond)
		waitUnread(t, bob, room.RoomID, mautrix.UnreadNotificationCounts{NotificationCount: 2, HighlightCount: 1})

		// A read receipt resets the room's counts.
		if err := bob.c.MarkRead(ctx, room.RoomID, last); err != nil {
			t.Fatal(err)
		}
		waitUnread(t, bob, room.RoomID, mautrix.UnreadNotificationCounts{})

		// Deleting the rule removes it; a second delete is 404.
		if err := bob.c.DeletePushRule(ctx, "global", pushrules.ContentRule, "surgery"); err != nil {
			t.Fatal(err)
		}
		r := srv.Do(t, http.MethodDelete, "/_matrix/client/v3/pushrules/global/content/surgery", bob.Token, nil)
		if r.Status != http.StatusNotFound || r.Errcode() != "M_NOT_FOUND" {
			t.Fatalf("second delete: %d %s", r.Status, r.Body)
		}
	})
}

// waitUnread polls sync briefly: counts are computed by a consumer that runs
// beside the send path, so the first sync after a send may precede it.
func waitUnread(t *testing.T, u roomUser, room id.RoomID, want mautrix.UnreadNotificationCounts) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := unreadIn(t, u, room)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unread_notifications = %+v, want %+v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
