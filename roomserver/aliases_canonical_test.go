package roomserver

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestWithoutAlias(t *testing.T) {
	const a = "#a:test"
	tests := []struct {
		name, in    string
		want        string
		wantChanged bool
	}{
		{"main alias", `{"alias":"#a:test"}`, `{}`, true},
		{"main kept, alt removed", `{"alias":"#b:test","alt_aliases":["#a:test","#c:test"]}`, `{"alias":"#b:test","alt_aliases":["#c:test"]}`, true},
		{"last alt removed", `{"alt_aliases":["#a:test"],"x":1}`, `{"x":1}`, true},
		{"both", `{"alias":"#a:test","alt_aliases":["#a:test","#b:test"]}`, `{"alt_aliases":["#b:test"]}`, true},
		{"absent", `{"alias":"#b:test"}`, ``, false},
		{"not an object", `[]`, ``, false},
		{"malformed alt_aliases left alone", `{"alt_aliases":"#a:test"}`, ``, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := withoutAlias(json.RawMessage(tc.in), a)
			if changed != tc.wantChanged || string(got) != tc.want {
				t.Fatalf("withoutAlias(%s) = %s, %v; want %s, %v", tc.in, got, changed, tc.want, tc.wantChanged)
			}
		})
	}
}

// TestDeleteAliasUpdatesCanonicalAlias: deleting an alias the room
// advertises sends a new m.room.canonical_alias without it; the deletion
// succeeds even when the deleter may not send that event.
func TestDeleteAliasUpdatesCanonicalAlias(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
		main, alt := "#main:"+testServer, "#alt:"+testServer
		for _, a := range []string{main, alt} {
			if err := s.CreateAlias(ctx, a, room, alice); err != nil {
				t.Fatal(err)
			}
		}
		mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.canonical_alias", StateKey: sp(""),
			Content: raw(map[string]any{"alias": main, "alt_aliases": []string{alt}})})

		if err := s.DeleteAlias(ctx, alt, alice, false); err != nil {
			t.Fatal(err)
		}
		if c := stateContent(t, s, room, "m.room.canonical_alias", ""); fmt.Sprint(c) != fmt.Sprint(map[string]any{"alias": main}) {
			t.Fatalf("after deleting alt alias: %v", c)
		}

		// bob joins but may not send canonical_alias; he created no alias,
		// so an admin deletion on his behalf is the only way: the alias
		// goes, the event (sent as bob) is refused and stays.
		if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAlias(ctx, main, bob, true); err != nil {
			t.Fatalf("admin delete: %v", err)
		}
		if _, _, err := s.ResolveAlias(ctx, main); err == nil {
			t.Fatal("alias still resolves")
		}
		if c := stateContent(t, s, room, "m.room.canonical_alias", ""); c["alias"] != main {
			t.Fatalf("event changed by a user without permission: %v", c)
		}
	})
}
