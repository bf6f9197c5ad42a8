package e2e

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// The membership table: every membership operation, allowed and refused,
// by power level and join rule. Each case gets a fresh room created by
// "owner" with "mod" (power 50, or the level the case sets) and "user"
// (power 0) joined; "out" starts outside. A case runs its setup steps
// (each must succeed), then the step under test, and checks the answer
// and the target's membership afterwards, as the owner reads it.

// mstep is one membership request: who does what to whom.
type mstep struct {
	who    string // owner, mod, user, out
	op     string // join, knock, leave, invite, kick, ban, unban
	target string // for invite, kick, ban, unban
	room   string // "" for the case's room; "space" for its space
}

type roomKind struct {
	version  string // "" for the default (12)
	preset   string
	joinRule string // overrides the preset's join rule when set
	modLevel int    // mod's power level (50 when zero)
}

type membershipCase struct {
	name   string
	room   roomKind
	setup  []mstep
	act    mstep
	status int    // 200, or the refusal's status
	code   string // the refusal's errcode
	after  string // target's membership afterwards ("" for none)
}

var (
	public          = roomKind{preset: "public_chat"}
	private         = roomKind{preset: "private_chat"}
	knockable       = roomKind{preset: "private_chat", joinRule: "knock"}
	restrict        = roomKind{preset: "private_chat", joinRule: "restricted"}
	knockRestricted = roomKind{preset: "private_chat", joinRule: "knock_restricted"}
)

func membershipCases() []membershipCase {
	forbidden := func(name string, room roomKind, setup []mstep, act mstep, after string) membershipCase {
		return membershipCase{name: name, room: room, setup: setup, act: act, status: 403, code: "M_FORBIDDEN", after: after}
	}
	ok := func(name string, room roomKind, setup []mstep, act mstep, after string) membershipCase {
		return membershipCase{name: name, room: room, setup: setup, act: act, status: 200, after: after}
	}
	s := func(steps ...mstep) []mstep { return steps }
	return []membershipCase{
		// join
		ok("join a public room", public, nil, mstep{who: "out", op: "join"}, "join"),
		forbidden("join an invite-only room uninvited", private, nil, mstep{who: "out", op: "join"}, ""),
		ok("join an invite-only room once invited", private, s(mstep{who: "owner", op: "invite", target: "out"}), mstep{who: "out", op: "join"}, "join"),
		forbidden("join a knock room uninvited", knockable, nil, mstep{who: "out", op: "join"}, ""),
		forbidden("join a restricted room without the allowed membership", restrict, nil, mstep{who: "out", op: "join"}, ""),
		ok("join a restricted room as a member of the allowed space", restrict, s(mstep{who: "out", op: "join", room: "space"}), mstep{who: "out", op: "join"}, "join"),
		ok("join a knock_restricted room through the allowed space", knockRestricted, s(mstep{who: "out", op: "join", room: "space"}), mstep{who: "out", op: "join"}, "join"),
		forbidden("join a public room while banned", public, s(mstep{who: "mod", op: "ban", target: "out"}), mstep{who: "out", op: "join"}, "ban"),
		ok("join again after unban", public, s(mstep{who: "mod", op: "ban", target: "out"}, mstep{who: "mod", op: "unban", target: "out"}), mstep{who: "out", op: "join"}, "join"),
		forbidden("join an invite-only room after being kicked", private, s(mstep{who: "owner", op: "invite", target: "out"}, mstep{who: "out", op: "join"}, mstep{who: "owner", op: "kick", target: "out"}), mstep{who: "out", op: "join"}, "leave"),
		ok("join again while joined is a no-op", public, nil, mstep{who: "user", op: "join"}, "join"),

		// knock
		ok("knock on a knock room", knockable, nil, mstep{who: "out", op: "knock"}, "knock"),
		ok("knock on a knock_restricted room", knockRestricted, nil, mstep{who: "out", op: "knock"}, "knock"),
		forbidden("knock on an invite-only room", private, nil, mstep{who: "out", op: "knock"}, ""),
		forbidden("knock on a public room", public, nil, mstep{who: "out", op: "knock"}, ""),
		forbidden("knock on a restricted room", restrict, nil, mstep{who: "out", op: "knock"}, ""),
		forbidden("knock while joined", knockable, nil, mstep{who: "user", op: "knock"}, "join"),
		forbidden("knock while banned", knockable, s(mstep{who: "mod", op: "ban", target: "out"}), mstep{who: "out", op: "knock"}, "ban"),
		ok("a knock is answered by an invite", knockable, s(mstep{who: "out", op: "knock"}), mstep{who: "mod", op: "invite", target: "out"}, "invite"),
		ok("a knocker joins once invited", knockable, s(mstep{who: "out", op: "knock"}, mstep{who: "mod", op: "invite", target: "out"}), mstep{who: "out", op: "join"}, "join"),

		// leave
		ok("leave a room", public, nil, mstep{who: "user", op: "leave"}, "leave"),
		ok("reject an invite", private, s(mstep{who: "owner", op: "invite", target: "out"}), mstep{who: "out", op: "leave"}, "leave"),
		ok("withdraw a knock", knockable, s(mstep{who: "out", op: "knock"}), mstep{who: "out", op: "leave"}, "leave"),
		forbidden("leave a room never joined", public, nil, mstep{who: "out", op: "leave"}, ""),
		forbidden("leave while banned", public, s(mstep{who: "mod", op: "ban", target: "out"}), mstep{who: "out", op: "leave"}, "ban"),

		// invite
		forbidden("invite below the invite level (public_chat: 50)", public, nil, mstep{who: "user", op: "invite", target: "out"}, ""),
		ok("invite at the invite level", public, nil, mstep{who: "mod", op: "invite", target: "out"}, "invite"),
		ok("anyone joined invites in private_chat (invite 0)", private, nil, mstep{who: "user", op: "invite", target: "out"}, "invite"),
		forbidden("invite from outside the room", private, nil, mstep{who: "out", op: "invite", target: "user"}, "join"),
		forbidden("invite a joined member", private, nil, mstep{who: "owner", op: "invite", target: "user"}, "join"),
		forbidden("invite a banned user", private, s(mstep{who: "owner", op: "ban", target: "out"}), mstep{who: "owner", op: "invite", target: "out"}, "ban"),
		ok("invite again is allowed", private, s(mstep{who: "owner", op: "invite", target: "out"}), mstep{who: "mod", op: "invite", target: "out"}, "invite"),

		// kick
		forbidden("kick below the kick level", public, nil, mstep{who: "user", op: "kick", target: "mod"}, "join"),
		ok("kick a lower member", public, nil, mstep{who: "mod", op: "kick", target: "user"}, "leave"),
		forbidden("kick an equal level", public, nil, mstep{who: "mod", op: "kick", target: "mod2"}, "join"),
		forbidden("kick a higher level (the creator)", public, nil, mstep{who: "mod", op: "kick", target: "owner"}, "join"),
		ok("the creator kicks a moderator", public, nil, mstep{who: "owner", op: "kick", target: "mod"}, "leave"),
		ok("kick revokes an invite", private, s(mstep{who: "owner", op: "invite", target: "out"}), mstep{who: "mod", op: "kick", target: "out"}, "leave"),
		ok("kick rejects a knock", knockable, s(mstep{who: "out", op: "knock"}), mstep{who: "mod", op: "kick", target: "out"}, "leave"),
		forbidden("kick someone not in the room", public, nil, mstep{who: "mod", op: "kick", target: "out"}, ""),
		forbidden("kick from outside the room", public, nil, mstep{who: "out", op: "kick", target: "user"}, "join"),

		// ban
		forbidden("ban below the ban level", public, nil, mstep{who: "user", op: "ban", target: "out"}, ""),
		ok("ban someone never in the room", public, nil, mstep{who: "mod", op: "ban", target: "out"}, "ban"),
		ok("ban a lower member", public, nil, mstep{who: "mod", op: "ban", target: "user"}, "ban"),
		forbidden("ban a higher level (the creator)", public, nil, mstep{who: "mod", op: "ban", target: "owner"}, "join"),
		ok("ban a moderator at a lower level", public, nil, mstep{who: "owner", op: "ban", target: "mod"}, "ban"),
		ok("a user at the ban level bans", roomKind{preset: "public_chat", modLevel: 50}, nil, mstep{who: "mod", op: "ban", target: "out"}, "ban"),
		forbidden("a user one below the ban level does not", roomKind{preset: "public_chat", modLevel: 49}, nil, mstep{who: "mod", op: "ban", target: "out"}, ""),

		// unban
		forbidden("unban below the ban level", public, s(mstep{who: "mod", op: "ban", target: "out"}), mstep{who: "user", op: "unban", target: "out"}, "ban"),
		ok("unban at the ban level", public, s(mstep{who: "mod", op: "ban", target: "out"}), mstep{who: "mod", op: "unban", target: "out"}, "leave"),
		forbidden("unban someone not banned", public, nil, mstep{who: "mod", op: "unban", target: "user"}, "join"),
		ok("unban by another member at the ban level", public,
			s(mstep{who: "mod", op: "ban", target: "out"}), mstep{who: "mod2", op: "unban", target: "out"}, "leave"),
		forbidden("unban from outside the room", public,
			s(mstep{who: "mod", op: "ban", target: "out"}, mstep{who: "mod2", op: "leave"}), mstep{who: "mod2", op: "unban", target: "out"}, "ban"),

		// room version 11: the creator has 100, not unlimited power.
		forbidden("v11: an admin at 100 cannot kick the creator at 100", roomKind{version: "11", preset: "public_chat", modLevel: 100},
			nil, mstep{who: "mod", op: "kick", target: "owner"}, "join"),
		forbidden("v11: the creator at 100 cannot kick an admin at 100", roomKind{version: "11", preset: "public_chat", modLevel: 100},
			nil, mstep{who: "owner", op: "kick", target: "mod"}, "join"),
		// room version 12: creators are above every level.
		forbidden("v12: an admin at 100 cannot kick the creator", roomKind{preset: "public_chat", modLevel: 100},
			nil, mstep{who: "mod", op: "kick", target: "owner"}, "join"),
		ok("v12: the creator kicks an admin at 100", roomKind{preset: "public_chat", modLevel: 100},
			nil, mstep{who: "owner", op: "kick", target: "mod"}, "leave"),
		ok("v12: the creator bans an admin at 100", roomKind{preset: "public_chat", modLevel: 100},
			nil, mstep{who: "owner", op: "ban", target: "mod"}, "ban"),
	}
}

// TestMembershipTable runs the membership table on both engines.
func TestMembershipTable(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		actors := map[string]roomUser{}
		for _, name := range []string{"owner", "mod", "mod2", "user", "out"} {
			actors[name] = newRoomUser(t, srv, name)
		}
		for _, tc := range membershipCases() {
			t.Run(tc.name, func(t *testing.T) {
				owner, mod, mod2, user := actors["owner"], actors["mod"], actors["mod2"], actors["user"]
				modLevel := tc.room.modLevel
				if modLevel == 0 {
					modLevel = 50
				}
				// The space a restricted join rule allows: public, owner's.
				space, err := owner.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat",
					CreationContent: map[string]any{"type": "m.space"}})
				if err != nil {
					t.Fatal(err)
				}
				req := &mautrix.ReqCreateRoom{Preset: tc.room.preset, RoomVersion: id.RoomVersion(tc.room.version),
					Invite: []id.UserID{mod.UserID, mod2.UserID, user.UserID},
					PowerLevelOverride: &event.PowerLevelsEventContent{
						Users: map[id.UserID]int{mod.UserID: modLevel, mod2.UserID: modLevel},
					}}
				if tc.room.version == "11" {
					req.PowerLevelOverride.Users[owner.UserID] = 100
				}
				if jr := tc.room.joinRule; jr != "" {
					content := map[string]any{"join_rule": jr}
					if jr == "restricted" || jr == "knock_restricted" {
						content["allow"] = []any{map[string]any{"type": "m.room_membership", "room_id": string(space.RoomID)}}
					}
					req.InitialState = []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: content}}}
				}
				created, err := owner.c.CreateRoom(ctx, req)
				if err != nil {
					t.Fatalf("create the case's room: %v", err)
				}
				rooms := map[string]id.RoomID{"": created.RoomID, "space": space.RoomID}
				for _, who := range []roomUser{mod, mod2, user} {
					if _, err := who.c.JoinRoomByID(ctx, created.RoomID); err != nil {
						t.Fatalf("%s joins the case's room: %v", who.UserID, err)
					}
				}
				for _, st := range tc.setup {
					if err := runStep(ctx, actors, rooms, st); err != nil {
						t.Fatalf("setup %+v: %v", st, err)
					}
				}
				err = runStep(ctx, actors, rooms, tc.act)
				if tc.status == 200 {
					if err != nil {
						t.Fatalf("%+v: want success, got %v", tc.act, err)
					}
				} else {
					wantMatrixErr(t, tc.name, err, tc.status, tc.code)
				}
				target := tc.act.target
				if target == "" {
					target = tc.act.who
				}
				if got := membershipOf(t, srv, owner, rooms[tc.act.room], actors[target].UserID); got != tc.after {
					t.Fatalf("%s's membership afterwards = %q, want %q", target, got, tc.after)
				}
			})
		}
	})
}

// runStep performs one membership request with the actor's client.
func runStep(ctx context.Context, actors map[string]roomUser, rooms map[string]id.RoomID, st mstep) error {
	c := actors[st.who].c
	roomID := rooms[st.room]
	target := actors[st.target].UserID
	var err error
	switch st.op {
	case "join":
		_, err = c.JoinRoom(ctx, string(roomID), nil)
	case "knock":
		_, err = c.KnockRoom(ctx, string(roomID), &mautrix.ReqKnockRoom{Reason: "please"})
	case "leave":
		_, err = c.LeaveRoom(ctx, roomID)
	case "invite":
		_, err = c.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: target})
	case "kick":
		_, err = c.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: target, Reason: "test"})
	case "ban":
		_, err = c.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: target, Reason: "test"})
	case "unban":
		_, err = c.UnbanUser(ctx, roomID, &mautrix.ReqUnbanUser{UserID: target})
	default:
		err = errors.New("unknown op " + st.op)
	}
	return err
}

// membershipOf is user's membership in the room as the owner reads it
// ("" when the user never had one).
func membershipOf(t *testing.T, srv *testserver.Server, reader roomUser, roomID id.RoomID, user id.UserID) string {
	t.Helper()
	r := srv.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+pathUser(user)), reader.Token, nil)
	if r.Status == 404 && r.Errcode() == "M_NOT_FOUND" {
		return ""
	}
	wantResp(t, "GET member state", r, 200)
	return r.String("membership")
}
