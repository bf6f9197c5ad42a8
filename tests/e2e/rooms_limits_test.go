package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// TestRoomRateLimits runs a server with tight per-user room limits: sends
// (messages, state, redactions), joins and invites each answer 429
// M_LIMIT_EXCEEDED with Retry-After and retry_after_ms once spent, per
// user, and a limited send stores nothing (its transaction ID stays
// unused).
func TestRoomRateLimits(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		slow := func(burst int) map[string]any { return map[string]any{"per_second": 0.001, "burst": burst} }
		srv := testserver.Start(t, testserver.Options{Engine: engine, Set: map[string]any{
			"rate_limits.enabled":             true,
			"rate_limits.registration_per_ip": map[string]any{"per_second": 100, "burst": 100},
			"rate_limits.message_per_user":    slow(3),
			"rate_limits.join_per_user":       slow(2),
			"rate_limits.invite_per_user":     slow(2),
		}})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		var others []roomUser
		for i := range 3 {
			others = append(others, newRoomUser(t, srv, fmt.Sprintf("guest%d", i)))
		}
		limited := func(what string, r *testserver.Response) {
			t.Helper()
			wantResp(t, what, r, 429, "M_LIMIT_EXCEEDED")
			secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || secs < 1 {
				t.Fatalf("%s: Retry-After %q", what, r.Header.Get("Retry-After"))
			}
			if ms, ok := r.JSON["retry_after_ms"].(float64); !ok || ms <= 0 {
				t.Fatalf("%s: retry_after_ms %v", what, r.JSON["retry_after_ms"])
			}
		}

		// Joins: createRoom counts as one.
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat",
			PowerLevelOverride: &event.PowerLevelsEventContent{InvitePtr: ptr(0)}})
		if err != nil {
			t.Fatal(err)
		}
		// Sends: three (message, state, message), then refused for all
		// three kinds.
		send := func(u roomUser, txn string) *testserver.Response {
			return srv.DoJSON(t, "PUT", roomPath(room.RoomID, "/send/m.room.message/"+txn), u.Token, map[string]any{"msgtype": "m.text", "body": txn})
		}
		wantResp(t, "send 1", send(alice, "a1"), 200)
		wantResp(t, "state 2", srv.DoJSON(t, "PUT", roomPath(room.RoomID, "/state/m.room.topic"), alice.Token, map[string]any{"topic": "t"}), 200)
		first := send(alice, "a3")
		wantResp(t, "send 3", first, 200)
		limited("send 4", send(alice, "a4"))
		limited("state 5", srv.DoJSON(t, "PUT", roomPath(room.RoomID, "/state/m.room.topic"), alice.Token, map[string]any{"topic": "u"}))
		limited("redact 6", srv.DoJSON(t, "PUT", roomPath(room.RoomID, "/redact/"+first.String("event_id")+"/r"), alice.Token, map[string]any{}))
		limited("send 4 again: the refused transaction was not stored", send(alice, "a4"))

		// Per user: bob is not affected by alice's spending.
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		wantResp(t, "bob sends", send(bob, "b1"), 200)

		// Invites: two, then refused; createRoom's invitees count too.
		for i, u := range others[:2] {
			if _, err := bob.c.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: u.UserID}); err != nil {
				t.Fatalf("invite %d: %v", i, err)
			}
		}
		limited("third invite", srv.DoJSON(t, "POST", roomPath(room.RoomID, "/invite"), bob.Token, map[string]any{"user_id": others[2].UserID}))
		limited("createRoom with an invitee", srv.DoJSON(t, "POST", clientPrefix+"/createRoom", bob.Token,
			map[string]any{"invite": []id.UserID{others[2].UserID}}))

		// Joins: alice's createRoom was one; one more, then refused.
		r2, err := bob.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err) // bob's joins: room join + this = 2
		}
		if _, err := alice.c.JoinRoomByID(ctx, r2.RoomID); err != nil {
			t.Fatalf("alice's second join: %v", err)
		}
		limited("alice's third join", srv.DoJSON(t, "POST", clientPrefix+"/join/"+string(room.RoomID), alice.Token, map[string]any{}))
		limited("bob's third join (createRoom)", srv.DoJSON(t, "POST", clientPrefix+"/createRoom", bob.Token, map[string]any{}))
	})
}
