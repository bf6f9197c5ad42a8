package roomserver

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

func TestCreateRoomPresets(t *testing.T) {
	// The table in the spec's createRoom description.
	tests := []struct {
		preset, visibility             string
		joinRule, history, guestAccess string
		invite                         float64
	}{
		{PresetPrivateChat, "", "invite", "shared", "can_join", 0},
		{PresetTrustedPrivateChat, "", "invite", "shared", "can_join", 0},
		{PresetPublicChat, "", "public", "shared", "forbidden", 50},
		{"", "public", "public", "shared", "forbidden", 50}, // visibility public implies public_chat
		{"", "private", "invite", "shared", "can_join", 0},  // and private implies private_chat
	}
	eachEngine(t, func(t *testing.T, s *Service) {
		alice, bob := user("alice"), user("bob")
		for _, version := range CreatableRoomVersions {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("v%s/%s%s", version, tt.preset, tt.visibility), func(t *testing.T) {
					room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: tt.preset, Visibility: tt.visibility,
						RoomVersion: version, Invite: []string{bob}})
					if got := stateContent(t, s, room, "m.room.join_rules", "")["join_rule"]; got != tt.joinRule {
						t.Errorf("join_rule %v, want %s", got, tt.joinRule)
					}
					if got := stateContent(t, s, room, "m.room.history_visibility", "")["history_visibility"]; got != tt.history {
						t.Errorf("history_visibility %v, want %s", got, tt.history)
					}
					if got := stateContent(t, s, room, "m.room.guest_access", "")["guest_access"]; got != tt.guestAccess {
						t.Errorf("guest_access %v, want %s", got, tt.guestAccess)
					}
					pl := stateContent(t, s, room, "m.room.power_levels", "")
					if pl["invite"] != tt.invite {
						t.Errorf("invite level %v, want %v", pl["invite"], tt.invite)
					}
					users := pl["users"].(map[string]any)
					create := stateContent(t, s, room, "m.room.create", "")
					if create["room_version"] != version {
						t.Errorf("room_version %v", create["room_version"])
					}
					events := pl["events"].(map[string]any)
					if version == "12" {
						if _, listed := users[alice]; listed {
							t.Error("v12 power levels list the creator")
						}
						if events["m.room.tombstone"].(float64) <= pl["state_default"].(float64) {
							t.Error("v12 tombstone level must be above state_default")
						}
						extra, _ := create["additional_creators"].([]any)
						trusted := tt.preset == PresetTrustedPrivateChat
						if trusted != (len(extra) == 1 && extra[0] == bob) {
							t.Errorf("additional_creators %v for preset %s", extra, tt.preset)
						}
					} else {
						if users[alice] != float64(100) {
							t.Errorf("creator level %v", users[alice])
						}
						if tt.preset == PresetTrustedPrivateChat && users[bob] != float64(100) {
							t.Errorf("trusted_private_chat invitee level %v", users[bob])
						}
						if tt.preset != PresetTrustedPrivateChat && users[bob] != nil {
							t.Errorf("invitee listed in users: %v", users[bob])
						}
					}
					if preV11(version) && create["creator"] != alice {
						t.Errorf("v%s create content creator %v", version, create["creator"])
					}
					if !preV11(version) && create["creator"] != nil {
						t.Errorf("v%s create content has creator", version)
					}
					if got := stateContent(t, s, room, "m.room.member", bob)["membership"]; got != "invite" {
						t.Errorf("invitee membership %v", got)
					}
					r, _ := s.Room(ctxT(t), room)
					if (tt.visibility == "public") != (r.Visibility == "public") {
						t.Errorf("directory visibility %s", r.Visibility)
					}
				})
			}
		}
	})
}

func TestCreateRoomOptions(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{
			Creator: alice, Name: sp("Surgery"), Topic: sp("Rota"), RoomAliasName: "surgery",
			CreationContent:           raw(map[string]any{"type": "m.space", "m.federate": false, "creator": "@mallory:x.test"}),
			PowerLevelContentOverride: raw(map[string]any{"events_default": 10}),
			InitialState: []StateEvent{
				{Type: "m.room.name", Content: raw(map[string]any{"name": "overridden by name"})},
				{Type: "m.room.join_rules", Content: raw(map[string]any{"join_rule": "public"})},
				{Type: "m.room.encryption", Content: raw(map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})},
			},
			CreatorProfile: Profile{DisplayName: "Alice"},
		})
		r, err := s.Room(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != "m.space" || r.Federate || r.JoinRule != "public" || r.PowerLevels.EventsDefault != 10 {
			t.Fatalf("room view %+v", r)
		}
		if r.Creator != alice {
			t.Fatalf("creation_content overrode the creator: %s", r.Creator)
		}
		if got := stateContent(t, s, room, "m.room.name", "")["name"]; got != "Surgery" {
			t.Fatalf("name %v: the name parameter must win over initial_state", got)
		}
		topic := stateContent(t, s, room, "m.room.topic", "")
		if topic["topic"] != "Rota" || topic["m.topic"] == nil {
			t.Fatalf("topic %v", topic)
		}
		if got := stateContent(t, s, room, "m.room.canonical_alias", "")["alias"]; got != "#surgery:"+testServer {
			t.Fatalf("canonical alias %v", got)
		}
		if got, _, err := s.ResolveAlias(ctx, "#surgery:"+testServer); err != nil || got != room {
			t.Fatalf("alias resolves to %s %v", got, err)
		}
		if got := stateContent(t, s, room, "m.room.member", alice)["displayname"]; got != "Alice" {
			t.Fatalf("creator displayname %v", got)
		}
		// The order of the spec: create, member, power levels, alias, preset
		// (minus what initial_state sets), initial_state, name, topic.
		evs, err := s.RoomEvents(ctx, room, 0, s.Notifier().Position(), 100, false)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, e := range evs {
			order = append(order, e.Type)
		}
		want := []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.canonical_alias",
			"m.room.history_visibility", "m.room.guest_access", "m.room.join_rules", "m.room.encryption", "m.room.name", "m.room.topic"}
		if !slices.Equal(order, want) {
			t.Fatalf("event order\n got %v\nwant %v", order, want)
		}

		// The alias is taken now.
		_, err = s.CreateRoom(ctx, CreateRoomRequest{Creator: alice, RoomAliasName: "surgery"})
		wantCode(t, err, "M_ROOM_IN_USE", 400)
	})
}

func TestCreateRoomErrors(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		before := s.Notifier().Position()
		tests := []struct {
			name   string
			req    CreateRoomRequest
			code   string
			status int
		}{
			{"unsupported version", CreateRoomRequest{Creator: alice, RoomVersion: "3"}, "M_UNSUPPORTED_ROOM_VERSION", 400},
			{"unknown version", CreateRoomRequest{Creator: alice, RoomVersion: "banana"}, "M_UNSUPPORTED_ROOM_VERSION", 400},
			{"unknown preset", CreateRoomRequest{Creator: alice, Preset: "party"}, "M_INVALID_PARAM", 400},
			{"bad visibility", CreateRoomRequest{Creator: alice, Visibility: "secret"}, "M_INVALID_PARAM", 400},
			{"bad invitee", CreateRoomRequest{Creator: alice, Invite: []string{"bob"}}, "M_INVALID_PARAM", 400},
			{"float in creation_content", CreateRoomRequest{Creator: alice, CreationContent: json.RawMessage(`{"x":1.5}`)}, "M_BAD_JSON", 400},
			{"creation_content not an object", CreateRoomRequest{Creator: alice, CreationContent: json.RawMessage(`[1]`)}, "M_BAD_JSON", 400},
			{"huge integer in override", CreateRoomRequest{Creator: alice, PowerLevelContentOverride: json.RawMessage(`{"ban":9007199254740992}`)}, "M_BAD_JSON", 400},
			{"creator locked out by override", CreateRoomRequest{Creator: alice, RoomVersion: "11", Name: sp("x"),
				PowerLevelContentOverride: json.RawMessage(`{"users":{"@alice:clinic.test":0}}`)}, "M_INVALID_ROOM_STATE", 400},
			{"v12 override listing the creator", CreateRoomRequest{Creator: alice,
				PowerLevelContentOverride: json.RawMessage(`{"users":{"@alice:clinic.test":100}}`)}, "M_INVALID_ROOM_STATE", 400},
			{"bad initial_state content", CreateRoomRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.topic", Content: json.RawMessage(`{"topic":NaN}`)}}}, "M_BAD_JSON", 400},
			{"bad alias", CreateRoomRequest{Creator: alice, RoomAliasName: "bad alias"}, "M_INVALID_PARAM", 400},
			{"additional_creators not user IDs", CreateRoomRequest{Creator: alice, CreationContent: json.RawMessage(`{"additional_creators":["bob"]}`)}, "M_BAD_JSON", 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.CreateRoom(ctx, tt.req)
				wantCode(t, err, tt.code, tt.status)
			})
		}
		if s.Notifier().Position() != before {
			t.Fatal("a rejected createRoom stored events")
		}
	})
}

func TestV12RoomIDIsCreateHash(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		r, err := s.Room(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		create, err := r.StateEvent(ctx, "m.room.create", "")
		if err != nil {
			t.Fatal(err)
		}
		if room != "!"+strings.TrimPrefix(create.EventID, "$") {
			t.Fatalf("room %s is not derived from create event %s", room, create.EventID)
		}
		if strings.Contains(string(create.JSON), `"room_id"`) {
			t.Fatal("v12 create event carries a room_id")
		}
		// v10/v11 rooms keep server-named IDs.
		old := mustCreate(t, s, CreateRoomRequest{Creator: alice, RoomVersion: "11"})
		if !strings.HasSuffix(old, ":"+testServer) {
			t.Fatalf("v11 room ID %s", old)
		}
	})
}

func TestSendLimits(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		before := s.Notifier().Position()
		big := `{"body":"` + strings.Repeat("x", 65536) + `"}`
		nearly := `{"body":"` + strings.Repeat("x", 65000) + `"}` // content fits, the signed event does not
		long := strings.Repeat("t", 256)
		tests := []struct {
			name     string
			typ      string
			stateKey *string
			content  string
			code     string
			status   int
		}{
			{"float", "m.room.message", nil, `{"n":1.5}`, "M_BAD_JSON", 400},
			{"exponent", "m.room.message", nil, `{"n":1e3}`, "M_BAD_JSON", 400},
			{"NaN", "m.room.message", nil, `{"n":NaN}`, "M_BAD_JSON", 400},
			{"Infinity", "m.room.message", nil, `{"n":Infinity}`, "M_BAD_JSON", 400},
			{"too big integer", "m.room.message", nil, `{"n":9007199254740992}`, "M_BAD_JSON", 400},
			{"too small integer", "m.room.message", nil, `{"n":-9007199254740992}`, "M_BAD_JSON", 400},
			{"duplicate keys", "m.room.message", nil, `{"n":1,"n":2}`, "M_BAD_JSON", 400},
			{"not an object", "m.room.message", nil, `[1]`, "M_BAD_JSON", 400},
			{"content too large", "m.room.message", nil, big, "M_TOO_LARGE", 413},
			{"event too large", "m.room.message", nil, nearly, "M_TOO_LARGE", 413},
			{"type too long", long, nil, `{}`, "M_TOO_LARGE", 413},
			{"state_key too long", "m.room.topic", sp(long), `{}`, "M_TOO_LARGE", 413},
			{"empty type", "", nil, `{}`, "M_BAD_JSON", 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.Send(ctxT(t), SendRequest{RoomID: room, Sender: alice, Type: tt.typ, StateKey: tt.stateKey, Content: json.RawMessage(tt.content)})
				wantCode(t, err, tt.code, tt.status)
			})
		}
		if s.Notifier().Position() != before {
			t.Fatal("rejected input was stored")
		}
		// The limits are exact: the largest safe integers are fine.
		mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.message", Content: json.RawMessage(`{"a":9007199254740991,"b":-9007199254740991}`)})
		_, err := s.Send(ctxT(t), message("!nope:"+testServer, alice, "x"))
		wantCode(t, err, "M_NOT_FOUND", 404)
	})
}

func TestPowerLevelsGovernSending(t *testing.T) {
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
				mustSend(t, s, message(room, bob, "allowed at events_default 0"))
				setPL := func(change func(pl map[string]any)) {
					t.Helper()
					pl := stateContent(t, s, room, "m.room.power_levels", "")
					change(pl)
					mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.power_levels", StateKey: sp(""), Content: raw(pl)})
				}
				setPL(func(pl map[string]any) { pl["events_default"] = 50 })
				_, err := s.Send(ctx, message(room, bob, "refused"))
				wantCode(t, err, "M_FORBIDDEN", 403)
				setPL(func(pl map[string]any) { pl["users"].(map[string]any)[bob] = 50 })
				mustSend(t, s, message(room, bob, "allowed at 50"))
				_, err = s.Send(ctx, SendRequest{RoomID: room, Sender: carol, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]any{"topic": "x"})})
				wantCode(t, err, "M_FORBIDDEN", 403)
				setPL(func(pl map[string]any) { pl["state_default"] = 0; pl["events_default"] = 0 })
				mustSend(t, s, SendRequest{RoomID: room, Sender: carol, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]any{"topic": "x"})})
				setPL(func(pl map[string]any) { pl["events"].(map[string]any)["m.room.topic"] = 60 })
				_, err = s.Send(ctx, SendRequest{RoomID: room, Sender: bob, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]any{"topic": "y"})})
				wantCode(t, err, "M_FORBIDDEN", 403)

				r, err := s.Room(ctx, room)
				if err != nil {
					t.Fatal(err)
				}
				if !r.PowerLevels.CanSend(alice, "m.room.topic", true) || r.PowerLevels.CanSend(bob, "m.room.topic", true) ||
					!r.PowerLevels.CanSend(carol, "m.room.message", false) {
					t.Fatalf("CanSend disagrees with the auth rules: %+v", r.PowerLevels)
				}
				if version == "12" && r.PowerLevels.UserLevel(alice) != CreatorLevel {
					t.Fatalf("v12 creator level %d", r.PowerLevels.UserLevel(alice))
				}
				if version != "12" && r.PowerLevels.UserLevel(alice) != 100 {
					t.Fatalf("creator level %d", r.PowerLevels.UserLevel(alice))
				}
			})
		}
	})
}

func TestStateUnchangedPutIsIdempotent(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		req := SendRequest{RoomID: room, Sender: alice, Type: "m.room.topic", StateKey: sp(""), Content: json.RawMessage(`{"topic": "Rota", "x": 1}`)}
		first := mustSend(t, s, req)
		req.Content = json.RawMessage(`{"x":1,"topic":"Rota"}`) // same content, other key order
		if again := mustSend(t, s, req); again != first {
			t.Fatalf("identical state PUT created %s, want %s", again, first)
		}
		req.Content = json.RawMessage(`{"topic":"Changed"}`)
		if changed := mustSend(t, s, req); changed == first {
			t.Fatal("changed state returned the old event")
		}
	})
}

func TestStateGroupsSnapshotAndHistory(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		var positions []int64
		// Past the snapshot interval, so the chain is cut at least once.
		for i := range 130 {
			id := mustSend(t, s, SendRequest{RoomID: room, Sender: alice, Type: "m.room.topic", StateKey: sp(""), Content: raw(map[string]any{"topic": fmt.Sprint(i)})})
			ev, err := s.GetEvent(ctx, room, id, alice)
			if err != nil {
				t.Fatal(err)
			}
			positions = append(positions, ev.Position)
		}
		for _, i := range []int{0, 57, 99, 100, 101, 129} {
			st, err := s.StateAt(ctx, room, positions[i], "m.room.topic", "m.room.create")
			if err != nil {
				t.Fatal(err)
			}
			if len(st) != 2 {
				t.Fatalf("state at %d has %d events", i, len(st))
			}
			for _, e := range st {
				if e.Type == "m.room.topic" && !strings.Contains(string(e.Content), fmt.Sprintf(`"topic":"%d"`, i)) {
					t.Fatalf("topic at step %d is %s", i, e.Content)
				}
			}
		}
		var snapshots int
		if err := s.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM state_groups WHERE prev_group IS NULL`).Scan(&snapshots); err != nil {
			t.Fatal(err)
		}
		if snapshots < 2 {
			t.Fatalf("%d snapshots after 130 state changes; the delta chain is unbounded", snapshots)
		}
		var entries, events int
		_ = s.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM state_group_entries`).Scan(&entries)
		_ = s.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&events)
		if entries > 3*events {
			t.Fatalf("%d state group rows for %d events: state is being copied", entries, events)
		}
	})
}

// Compile-time check that the room versions we create are all known to gmsl.
var _ = func() bool {
	for _, v := range CreatableRoomVersions {
		gmsl.MustGetRoomVersion(gmsl.RoomVersion(v))
	}
	return true
}()
