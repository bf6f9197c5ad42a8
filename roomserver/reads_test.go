package roomserver

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestHistoryVisibility(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob, eve := user("alice"), user("bob"), user("eve")
		tests := []struct {
			visibility string
			// what bob (joining after the first message) and eve (never
			// joined) see of the message sent before bob's invite/join
			bobSeesEarlier, eveSeesEarlier, bobSeesInvitedPeriod bool
		}{
			{"world_readable", true, true, true},
			{"shared", true, false, true},
			{"invited", false, false, true},
			{"joined", false, false, false},
		}
		for _, tt := range tests {
			t.Run(tt.visibility, func(t *testing.T) {
				room := mustCreate(t, s, CreateRoomRequest{Creator: alice, InitialState: []StateEvent{
					{Type: "m.room.history_visibility", Content: raw(map[string]any{"history_visibility": tt.visibility})}}})
				earlier := mustSend(t, s, message(room, alice, "before bob"))
				if _, err := s.Invite(ctx, MembershipRequest{RoomID: room, Sender: alice, Target: bob}); err != nil {
					t.Fatal(err)
				}
				invited := mustSend(t, s, message(room, alice, "while bob is invited"))
				join, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: bob})
				if err != nil {
					t.Fatal(err)
				}
				later := mustSend(t, s, message(room, alice, "after bob joined"))
				if _, err := s.Leave(ctx, MembershipRequest{RoomID: room, Sender: bob}); err != nil {
					t.Fatal(err)
				}
				afterLeave := mustSend(t, s, message(room, alice, "after bob left"))

				sees := func(who, id string) bool {
					t.Helper()
					_, err := s.GetEvent(ctx, room, id, who)
					if err != nil {
						wantCode(t, err, "M_NOT_FOUND", 404)
					}
					return err == nil
				}
				if got := sees(bob, earlier); got != tt.bobSeesEarlier {
					t.Errorf("bob sees the earlier message: %v, want %v", got, tt.bobSeesEarlier)
				}
				if got := sees(eve, earlier); got != tt.eveSeesEarlier {
					t.Errorf("eve sees the earlier message: %v, want %v", got, tt.eveSeesEarlier)
				}
				if got := sees(bob, invited); got != tt.bobSeesInvitedPeriod {
					t.Errorf("bob sees the message while invited: %v, want %v", got, tt.bobSeesInvitedPeriod)
				}
				if !sees(bob, join.EventID) || !sees(bob, later) {
					t.Error("bob cannot see his own join or what followed while joined")
				}
				if got := sees(bob, afterLeave); got != (tt.visibility == "world_readable") {
					t.Errorf("bob sees what came after he left: %v", got)
				}
				if !sees(alice, earlier) {
					t.Error("a joined member cannot see the room")
				}
			})
		}
	})
}

func TestStateAndMembersForReaders(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob, carol, eve := user("alice"), user("bob"), user("carol"), user("eve")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat, Name: sp("Before")})
		if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		bobJoinedAt := s.Notifier().Position()
		if _, err := s.Leave(ctx, MembershipRequest{RoomID: room, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.name", StateKey: sp(""), Content: raw(map[string]any{"name": "After"})})
		if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: carol}); err != nil {
			t.Fatal(err)
		}

		// bob left: he reads the state as of his leave.
		name, err := s.StateEventFor(ctx, room, bob, "m.room.name", "")
		if err != nil || string(name.Content) != `{"name":"Before"}` {
			t.Fatalf("bob's view of the name: %v %v", name, err)
		}
		st, err := s.StateFor(ctx, room, bob)
		if err != nil || len(st) == 0 {
			t.Fatalf("bob's state %d %v", len(st), err)
		}
		_, err = s.StateFor(ctx, room, eve)
		wantCode(t, err, "M_FORBIDDEN", 403)
		_, err = s.StateFor(ctx, "!unknown:"+testServer, alice)
		wantCode(t, err, "M_FORBIDDEN", 403)
		_, err = s.StateEventFor(ctx, room, alice, "m.room.avatar", "")
		wantCode(t, err, "M_NOT_FOUND", 404)
		if name, err := s.StateEventFor(ctx, room, carol, "m.room.name", ""); err != nil || string(name.Content) != `{"name":"After"}` {
			t.Fatalf("carol's view of the name: %v %v", name, err)
		}

		memberIDs := func(evs []*Event) []string {
			var out []string
			for _, e := range evs {
				out = append(out, *e.StateKey)
			}
			slices.Sort(out)
			return out
		}
		now, err := s.MembersFor(ctx, room, alice, MembersQuery{})
		if err != nil || !slices.Equal(memberIDs(now), []string{alice, bob, carol}) {
			t.Fatalf("members now %v %v", memberIDs(now), err)
		}
		joined, _ := s.MembersFor(ctx, room, alice, MembersQuery{Membership: "join"})
		if !slices.Equal(memberIDs(joined), []string{alice, carol}) {
			t.Fatalf("joined members %v", memberIDs(joined))
		}
		notLeft, _ := s.MembersFor(ctx, room, alice, MembersQuery{NotMembership: "leave"})
		if !slices.Equal(memberIDs(notLeft), []string{alice, carol}) {
			t.Fatalf("not-left members %v", memberIDs(notLeft))
		}
		at, _ := s.MembersFor(ctx, room, alice, MembersQuery{At: bobJoinedAt, Membership: "join"})
		if !slices.Equal(memberIDs(at), []string{alice, bob}) {
			t.Fatalf("members at bob's join %v", memberIDs(at))
		}
		// bob, having left, sees nothing after his departure.
		bobs, _ := s.MembersFor(ctx, room, bob, MembersQuery{})
		if slices.Contains(memberIDs(bobs), carol) {
			t.Fatal("a departed member sees later joins")
		}
	})
}

func TestAliasesAndDirectory(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat, Name: sp("Reception"), Topic: sp("Front desk")})
		other := mustCreate(t, s, CreateRoomRequest{Creator: bob, Name: sp("Back office")})
		a := "#reception:" + testServer
		if err := s.CreateAlias(ctx, a, room, bob); err != nil {
			t.Fatal(err)
		}
		wantCode(t, s.CreateAlias(ctx, a, other, bob), "M_UNKNOWN", 409)
		wantCode(t, s.CreateAlias(ctx, "#x:elsewhere.test", room, bob), "M_INVALID_PARAM", 400)
		wantCode(t, s.CreateAlias(ctx, "reception", room, bob), "M_INVALID_PARAM", 400)
		wantCode(t, s.CreateAlias(ctx, "#y:"+testServer, "!nope:"+testServer, bob), "M_NOT_FOUND", 404)
		if id, servers, err := s.ResolveAlias(ctx, a); err != nil || id != room || !slices.Equal(servers, []string{testServer}) {
			t.Fatalf("resolve %s %v %v", id, servers, err)
		}
		if al, err := s.LocalAliases(ctx, room, alice); err != nil || !slices.Equal(al, []string{a}) {
			t.Fatalf("aliases %v %v", al, err)
		}
		_, err := s.LocalAliases(ctx, room, bob)
		wantCode(t, err, "M_FORBIDDEN", 403)

		// m.room.canonical_alias must name aliases of this room.
		_, err = s.Send(ctx, SendRequest{RoomID: other, Sender: bob, Type: "m.room.canonical_alias", StateKey: sp(""), Content: raw(map[string]any{"alias": a})})
		wantCode(t, err, "M_BAD_ALIAS", 400)
		_, err = s.Send(ctx, SendRequest{RoomID: room, Sender: alice, Type: "m.room.canonical_alias", StateKey: sp(""), Content: raw(map[string]any{"alias": "not-an-alias"})})
		wantCode(t, err, "M_INVALID_PARAM", 400)
		mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.canonical_alias", StateKey: sp(""), Content: raw(map[string]any{"alias": a, "alt_aliases": []string{"#remote:elsewhere.test"}})})

		// Deleting: not by an outsider; by the alias creator.
		if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: user("carol")}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, s.DeleteAlias(ctx, a, user("carol"), false), "M_FORBIDDEN", 403)
		if err := s.DeleteAlias(ctx, a, bob, false); err != nil {
			t.Fatal(err)
		}
		wantCode(t, s.DeleteAlias(ctx, a, bob, false), "M_NOT_FOUND", 404)
		_, _, err = s.ResolveAlias(ctx, a)
		wantCode(t, err, "M_NOT_FOUND", 404)

		// The directory.
		if v, _ := s.DirectoryVisibility(ctx, other); v != "private" {
			t.Fatalf("default visibility %s", v)
		}
		wantCode(t, s.SetDirectoryVisibility(ctx, other, alice, "public", false), "M_FORBIDDEN", 403)
		if err := s.SetDirectoryVisibility(ctx, other, bob, "public", false); err != nil {
			t.Fatal(err)
		}
		if err := s.SetDirectoryVisibility(ctx, room, alice, "public", false); err != nil {
			t.Fatal(err)
		}
		page, err := s.PublicRooms(ctx, PublicRoomsQuery{Limit: 1})
		if err != nil || len(page.Chunk) != 1 || page.NextBatch == "" || page.TotalRoomCountEstimate != 2 {
			t.Fatalf("first page %+v %v", page, err)
		}
		if page.Chunk[0].RoomID != room || page.Chunk[0].NumJoinedMembers != 2 || page.Chunk[0].Name != "Reception" ||
			page.Chunk[0].Topic != "Front desk" || page.Chunk[0].JoinRule != "public" || page.Chunk[0].CanonicalAlias != a {
			t.Fatalf("directory entry %+v", page.Chunk[0])
		}
		next, err := s.PublicRooms(ctx, PublicRoomsQuery{Limit: 1, Since: page.NextBatch})
		if err != nil || len(next.Chunk) != 1 || next.Chunk[0].RoomID != other || next.NextBatch != "" || next.PrevBatch == "" {
			t.Fatalf("second page %+v %v", next, err)
		}
		filtered, _ := s.PublicRooms(ctx, PublicRoomsQuery{Filter: "office"})
		if len(filtered.Chunk) != 1 || filtered.Chunk[0].RoomID != other {
			t.Fatalf("filtered %+v", filtered)
		}
		_, err = s.PublicRooms(ctx, PublicRoomsQuery{Since: "garbage"})
		wantCode(t, err, "M_INVALID_PARAM", 400)
	})
}

func TestUpgrade(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		old := mustCreate(t, s, CreateRoomRequest{Creator: alice, RoomVersion: "10", Preset: PresetPublicChat, Name: sp("Team"),
			RoomAliasName: "team", CreationContent: raw(map[string]any{"type": "m.space"})})
		if _, err := s.Join(ctx, MembershipRequest{RoomID: old, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Upgrade(ctx, UpgradeRequest{RoomID: old, Sender: bob, NewVersion: "12"})
		wantCode(t, err, "M_FORBIDDEN", 403)
		_, err = s.Upgrade(ctx, UpgradeRequest{RoomID: old, Sender: alice, NewVersion: "3"})
		wantCode(t, err, "M_UNSUPPORTED_ROOM_VERSION", 400)

		newRoom, err := s.Upgrade(ctx, UpgradeRequest{RoomID: old, Sender: alice, NewVersion: "12", AdditionalCreators: []string{bob}})
		if err != nil {
			t.Fatal(err)
		}
		nr, err := s.Room(ctx, newRoom)
		if err != nil {
			t.Fatal(err)
		}
		if nr.Version != "12" || nr.Predecessor == nil || nr.Predecessor.RoomID != old || nr.Type != "m.space" || !nr.IsCreator(bob) {
			t.Fatalf("new room %+v", nr)
		}
		if _, listed := nr.PowerLevels.Users[alice]; listed {
			t.Fatal("v12 replacement lists the creator in power levels")
		}
		if got := stateContent(t, s, newRoom, "m.room.name", "")["name"]; got != "Team" {
			t.Fatalf("name not transferred: %v", got)
		}
		or, err := s.Room(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		if or.ReplacementRoom != newRoom {
			t.Fatalf("old room tombstone points to %q", or.ReplacementRoom)
		}
		if or.PowerLevels.EventsDefault < 50 || or.PowerLevels.Invite < 50 {
			t.Fatalf("old room still open: %+v", or.PowerLevels)
		}
		if id, _, err := s.ResolveAlias(ctx, "#team:"+testServer); err != nil || id != newRoom {
			t.Fatalf("alias not moved: %s %v", id, err)
		}
		_, err = s.Send(ctx, message(old, bob, "still here?"))
		wantCode(t, err, "M_FORBIDDEN", 403)
	})
}

func TestNotifierWaitsWithoutPolling(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		pos := s.Notifier().Position()
		got := make(chan int64, 1)
		go func() {
			p, err := s.Notifier().Wait(context.Background(), pos)
			if err != nil {
				t.Error(err)
			}
			got <- p
		}()
		id := mustSend(t, s, message(room, alice, "wake up"))
		select {
		case p := <-got:
			ev, err := s.GetEvent(ctxT(t), room, id, alice)
			if err != nil || p < ev.Position {
				t.Fatalf("woke at %d before the event at %v (%v)", p, ev, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiter not woken")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := s.Notifier().Wait(ctx, s.Notifier().Position()); err == nil {
			t.Fatal("Wait returned without a new event")
		}
	})
}

func TestClosedServiceRefuses(t *testing.T) {
	e := sqliteEngine(t)
	db := e.open(t)
	defer db.Close()
	s := newService(t, db)
	room := mustCreate(t, s, CreateRoomRequest{Creator: user("alice")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctxT(t), message(room, user("alice"), "late")); err == nil {
		t.Fatal("send after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
