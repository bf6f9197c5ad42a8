package roomserver

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestMembershipOperations(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob, carol, dave := user("alice"), user("bob"), user("carol"), user("dave")
		private := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPrivateChat, RoomAliasName: "private"})
		public := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat, RoomAliasName: "lobby"})

		type step struct {
			name   string
			do     func() error
			code   string // "" = success
			status int
		}
		m := func(room, sender, target string) MembershipRequest {
			return MembershipRequest{RoomID: room, Sender: sender, Target: target}
		}
		ok := func(r MembershipResult, err error) error { return err }
		steps := []step{
			{"join private without invite", func() error { return ok(s.Join(ctx, m(private, bob, ""))) }, "M_FORBIDDEN", 403},
			{"join public by alias", func() error { return ok(s.Join(ctx, m("#lobby:"+testServer, bob, ""))) }, "", 0},
			{"join unknown alias", func() error { return ok(s.Join(ctx, m("#nowhere:"+testServer, bob, ""))) }, "M_NOT_FOUND", 404},
			{"join unknown room", func() error { return ok(s.Join(ctx, m("!nowhere:"+testServer, bob, ""))) }, "M_NOT_FOUND", 404},
			{"join malformed room ID", func() error { return ok(s.Join(ctx, m("nowhere", bob, ""))) }, "M_INVALID_PARAM", 400},
			{"non-member cannot invite", func() error { return ok(s.Invite(ctx, m(private, bob, carol))) }, "M_FORBIDDEN", 403},
			{"creator invites bob", func() error { return ok(s.Invite(ctx, m(private, alice, bob))) }, "", 0},
			{"invite of a joined user fails", func() error { return ok(s.Invite(ctx, m(private, alice, alice))) }, "M_FORBIDDEN", 403},
			{"invite a malformed user", func() error { return ok(s.Invite(ctx, m(private, alice, "carol"))) }, "M_INVALID_PARAM", 400},
			{"invite a remote user", func() error { return ok(s.Invite(ctx, m(private, alice, "@x:elsewhere.test"))) }, "M_FORBIDDEN", 403},
			{"bob joins after the invite", func() error { return ok(s.Join(ctx, m(private, bob, ""))) }, "", 0},
			{"bob (level 0) cannot kick alice", func() error { return ok(s.Kick(ctx, m(private, bob, alice))) }, "M_FORBIDDEN", 403},
			{"bob invites carol at invite level 0", func() error { return ok(s.Invite(ctx, m(private, bob, carol))) }, "", 0},
			{"carol rejects the invite", func() error { return ok(s.Leave(ctx, m(private, carol, ""))) }, "", 0},
			{"carol cannot leave again", func() error { return ok(s.Leave(ctx, m(private, carol, ""))) }, "M_FORBIDDEN", 403},
			{"kick of a non-member fails", func() error { return ok(s.Kick(ctx, m(private, alice, carol))) }, "M_FORBIDDEN", 403},
			{"alice kicks bob", func() error { return ok(s.Kick(ctx, m(private, alice, bob))) }, "", 0},
			{"bob cannot ban dave (not in room)", func() error { return ok(s.Ban(ctx, m(private, bob, dave))) }, "M_FORBIDDEN", 403},
			{"alice bans dave, who was never here", func() error { return ok(s.Ban(ctx, m(private, alice, dave))) }, "", 0},
			{"dave cannot join while banned", func() error { return ok(s.Join(ctx, m(private, dave, ""))) }, "M_FORBIDDEN", 403},
			{"banned dave cannot be invited", func() error { return ok(s.Invite(ctx, m(private, alice, dave))) }, "M_FORBIDDEN", 403},
			{"unban of a non-banned user fails", func() error { return ok(s.Unban(ctx, m(private, alice, carol))) }, "M_FORBIDDEN", 403},
			{"alice unbans dave", func() error { return ok(s.Unban(ctx, m(private, alice, dave))) }, "", 0},
			{"dave can be invited again", func() error { return ok(s.Invite(ctx, m(private, alice, dave))) }, "", 0},
			{"knock on an invite room fails", func() error { return ok(s.Knock(ctx, m(private, carol, ""))) }, "M_FORBIDDEN", 403},
			{"forget while invited fails", func() error { return s.Forget(ctx, private, dave) }, "M_UNKNOWN", 400},
			{"forget a never-joined room", func() error { return s.Forget(ctx, public, carol) }, "M_NOT_FOUND", 404},
			{"bob forgets the room he was kicked from", func() error { return s.Forget(ctx, private, bob) }, "", 0},
		}
		for _, st := range steps {
			err := st.do()
			if st.code == "" {
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				continue
			}
			t.Run(st.name, func(t *testing.T) { wantCode(t, err, st.code, st.status) })
		}
		r, err := s.Room(ctx, private)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{alice: "join", bob: "leave", carol: "leave", dave: "invite"}
		for u, m := range want {
			if got, _ := r.Membership(ctx, u); got != m {
				t.Errorf("%s membership %s, want %s", u, got, m)
			}
		}
		rooms, err := s.RoomsOfUser(ctx, bob)
		if err != nil {
			t.Fatal(err)
		}
		for _, ur := range rooms {
			if ur.RoomID == private && !ur.Forgotten {
				t.Error("forget did not mark the room")
			}
		}
		joined, err := s.JoinedRooms(ctx, bob)
		if err != nil || !slices.Equal(joined, []string{public}) {
			t.Fatalf("bob's joined rooms %v %v", joined, err)
		}
	})
}

func TestKnockAndRestrictedJoin(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		// A practice space and a team channel restricted to its members.
		space := mustCreate(t, s, CreateRoomRequest{Creator: alice, CreationContent: raw(map[string]any{"type": "m.space"}), Invite: []string{bob}})
		channel := mustCreate(t, s, CreateRoomRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.join_rules",
			Content: raw(map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}})}}})
		_, err := s.Join(ctx, MembershipRequest{RoomID: channel, Sender: bob})
		wantCode(t, err, "M_FORBIDDEN", 403) // invited to the space, not joined
		if _, err := s.Join(ctx, MembershipRequest{RoomID: space, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		res, err := s.Join(ctx, MembershipRequest{RoomID: channel, Sender: bob, Profile: Profile{DisplayName: "Bob"}})
		if err != nil {
			t.Fatalf("space member joining the restricted channel: %v", err)
		}
		ev, err := s.GetEvent(ctx, channel, res.EventID, bob)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		_ = json.Unmarshal(ev.Content, &c)
		if c["join_authorised_via_users_server"] != alice || c["displayname"] != "Bob" {
			t.Fatalf("restricted join content %v", c)
		}
		// Joining again with the same profile changes nothing.
		again, err := s.Join(ctx, MembershipRequest{RoomID: channel, Sender: bob, Profile: Profile{DisplayName: "Bob"}})
		if err != nil || again.EventID != res.EventID {
			t.Fatalf("idempotent join: %+v %v", again, err)
		}

		knockRoom := mustCreate(t, s, CreateRoomRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.join_rules",
			Content: raw(map[string]any{"join_rule": "knock"})}}})
		if _, err := s.Knock(ctx, MembershipRequest{RoomID: knockRoom, Sender: carol, Reason: "new client"}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Join(ctx, MembershipRequest{RoomID: knockRoom, Sender: carol})
		wantCode(t, err, "M_FORBIDDEN", 403)
		if _, err := s.Invite(ctx, MembershipRequest{RoomID: knockRoom, Sender: alice, Target: carol}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Join(ctx, MembershipRequest{RoomID: knockRoom, Sender: carol}); err != nil {
			t.Fatal(err)
		}
		members, err := s.JoinedMembers(ctx, channel, alice)
		if err != nil || len(members) != 2 || members[bob].DisplayName != "Bob" {
			t.Fatalf("joined members %v %v", members, err)
		}
		_, err = s.JoinedMembers(ctx, channel, carol)
		wantCode(t, err, "M_FORBIDDEN", 403)
	})
}

func TestRedaction(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		for _, version := range CreatableRoomVersions {
			t.Run("v"+version, func(t *testing.T) {
				room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat, RoomVersion: version})
				for _, u := range []string{bob, carol} {
					if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: u}); err != nil {
						t.Fatal(err)
					}
				}
				target := mustSend(t, s, message(room, bob, "patient details"))
				_, err := s.Redact(ctx, RedactRequest{RoomID: room, Sender: carol, EventID: target})
				wantCode(t, err, "M_FORBIDDEN", 403)
				_, err = s.Redact(ctx, RedactRequest{RoomID: room, Sender: bob, EventID: "$missing"})
				wantCode(t, err, "M_NOT_FOUND", 404)
				req := RedactRequest{RoomID: room, Sender: alice, DeviceID: "D", TxnID: "r1", EventID: target, Reason: "wrong chat"}
				redaction, err := s.Redact(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if again, err := s.Redact(ctx, req); err != nil || again != redaction {
					t.Fatalf("redact retry: %s %v", again, err)
				}
				ev, err := s.GetEvent(ctx, room, target, bob)
				if err != nil {
					t.Fatal(err)
				}
				if !ev.Redacted() || string(ev.Content) != "{}" {
					t.Fatalf("redacted event content %s", ev.Content)
				}
				ces, err := s.ClientEvents(ctx, []*Event{ev}, Viewer{UserID: bob})
				if err != nil {
					t.Fatal(err)
				}
				rb := ces[0].Unsigned.RedactedBecause
				if rb == nil || rb.EventID != redaction || rb.Redacts != target {
					t.Fatalf("redacted_because %+v", rb)
				}
				var rc map[string]any
				_ = json.Unmarshal(rb.Content, &rc)
				if rc["redacts"] != target || rc["reason"] != "wrong chat" {
					t.Fatalf("redaction content %v", rc)
				}
				// Redacting a state event keeps it in the state, redacted.
				topic := mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]any{"topic": "secret"})})
				if _, err := s.Redact(ctx, RedactRequest{RoomID: room, Sender: alice, EventID: topic}); err != nil {
					t.Fatal(err)
				}
				if c := stateContent(t, s, room, "m.room.topic", ""); len(c) != 0 {
					t.Fatalf("redacted topic content %v", c)
				}
				// /send with m.room.redaction is a redaction too.
				other := mustSend(t, s, message(room, carol, "oops"))
				if _, err := s.Send(ctx, SendRequest{RoomID: room, Sender: carol, Type: "m.room.redaction", Content: raw(map[string]any{"redacts": other})}); err != nil {
					t.Fatal(err)
				}
				if ev, _ := s.GetEvent(ctx, room, other, carol); !ev.Redacted() {
					t.Fatal("redaction via /send not applied")
				}
			})
		}
	})
}

func TestClientEventsUnsigned(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Topic: sp("first")})
		req := message(room, alice, "hi")
		req.DeviceID, req.TxnID = "PHONE", "abc"
		msgID := mustSend(t, s, req)
		topicID := mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]any{"topic": "second"})})
		msg, _ := s.GetEvent(ctx, room, msgID, alice)
		topic, _ := s.GetEvent(ctx, room, topicID, alice)
		ces, err := s.ClientEvents(ctx, []*Event{msg, topic}, Viewer{UserID: alice, DeviceID: "PHONE"})
		if err != nil {
			t.Fatal(err)
		}
		if ces[0].Unsigned.TransactionID != "abc" || ces[0].RoomID != room || ces[0].Sender != alice {
			t.Fatalf("message client event %+v", ces[0])
		}
		if ces[1].Unsigned.ReplacesState == "" || string(ces[1].Unsigned.PrevContent) == "" || ces[1].Unsigned.PrevSender != alice {
			t.Fatalf("state client event unsigned %+v", ces[1].Unsigned)
		}
		other, _ := s.ClientEvents(ctx, []*Event{msg}, Viewer{UserID: alice, DeviceID: "LAPTOP"})
		if other[0].Unsigned.TransactionID != "" {
			t.Fatal("transaction_id shown to another device")
		}
	})
}
