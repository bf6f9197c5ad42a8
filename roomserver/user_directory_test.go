package roomserver

import (
	"fmt"
	"testing"
)

// TestDirectoryUsers: room mates, members of public rooms and members of
// world-readable rooms are visible; members of other private rooms, and the
// searcher through a private room, are not.
func TestDirectoryUsers(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob, carol, dave, eve := user("alice"), user("bob"), user("carol"), user("dave"), user("eve")
		mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
		shared := mustCreate(t, s, CreateRoomRequest{Creator: bob, Preset: PresetPrivateChat})
		mustCreate(t, s, CreateRoomRequest{Creator: carol, Preset: PresetPrivateChat})
		readable := mustCreate(t, s, CreateRoomRequest{Creator: dave, Preset: PresetPrivateChat})
		mustSend(t, s, SendRequest{RoomID: readable, Sender: dave, Type: "m.room.history_visibility", StateKey: sp(""),
			Content: raw(map[string]any{"history_visibility": "world_readable"})})
		if _, err := s.Invite(ctx, MembershipRequest{RoomID: shared, Sender: bob, Target: eve}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Join(ctx, MembershipRequest{RoomID: shared, Sender: eve}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			searcher string
			want     []string
		}{
			{eve, []string{alice, bob, dave}},
			{bob, []string{alice, dave, eve}},
			{carol, []string{alice, dave}},
			{alice, []string{alice, dave}},
		}
		for _, tc := range tests {
			t.Run(tc.searcher, func(t *testing.T) {
				got, err := s.DirectoryUsers(ctx, tc.searcher)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("DirectoryUsers(%s) = %v, want %v", tc.searcher, got, tc.want)
				}
			})
		}
	})
}
