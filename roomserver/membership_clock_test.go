package roomserver

import "testing"

// TestMembershipClock: the clock moves after membership changes (events
// and forgotten flags) and stays put for everything else, and LastChange
// is the position of the newest membership event.
func TestMembershipClock(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		clock := s.Memberships()
		if got, want := clock.LastChange(), s.Notifier().Position(); got != want {
			t.Fatalf("at start LastChange = %d, want the log's end %d", got, want)
		}
		var room string
		m := MembershipRequest{Sender: bob}
		steps := []struct {
			name string
			do   func() error
			// moves: the generation changes. last: where LastChange is
			// afterwards: "same", "newest" (the log's end) or "forward"
			// (past where it was, not past the log's end).
			moves bool
			last  string
		}{
			{"create a room (the creator joins)", func() error {
				room = mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
				m.RoomID = room
				return nil
			}, true, "forward"},
			{"a message", func() error { _, err := s.Send(ctx, message(room, alice, "hi")); return err }, false, "same"},
			{"a state event that is not a membership", func() error {
				_, err := s.Send(ctx, SendRequest{RoomID: room, Sender: alice, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]string{"topic": "t"})})
				return err
			}, false, "same"},
			{"bob joins", func() error { _, err := s.Join(ctx, m); return err }, true, "newest"},
			{"another message", func() error { _, err := s.Send(ctx, message(room, bob, "hello")); return err }, false, "same"},
			{"bob leaves", func() error { _, err := s.Leave(ctx, m); return err }, true, "newest"},
			{"bob forgets the room", func() error { return s.Forget(ctx, room, bob) }, true, "same"},
			{"a refused join changes nothing", func() error {
				_, err := s.Join(ctx, MembershipRequest{RoomID: "!nowhere:" + testServer, Sender: bob})
				if err == nil {
					t.Fatal("joining an unknown room succeeded")
				}
				return nil
			}, false, "same"},
		}
		for _, st := range steps {
			gen, last := clock.Generation(), clock.LastChange()
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if moved := clock.Generation() != gen; moved != st.moves {
				t.Errorf("%s: generation moved = %v, want %v", st.name, moved, st.moves)
			}
			got, end := clock.LastChange(), s.Notifier().Position()
			switch {
			case st.last == "same" && got != last,
				st.last == "newest" && got != end,
				st.last == "forward" && (got <= last || got > end):
				t.Errorf("%s: LastChange = %d, want %s (was %d, log end %d)", st.name, got, st.last, last, end)
			}
		}
	})
}
