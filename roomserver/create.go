package roomserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
	"myelin/internal/canonicaljson"
	"myelin/storage"
)

// Presets of createRoom.
const (
	PresetPrivateChat        = "private_chat"
	PresetTrustedPrivateChat = "trusted_private_chat"
	PresetPublicChat         = "public_chat"
)

// StateEvent is a state event supplied by a client (createRoom's
// initial_state).
type StateEvent struct {
	Type     string
	StateKey string
	Content  json.RawMessage
}

// Profile is the displayname and avatar a member event carries.
type Profile struct {
	DisplayName string
	AvatarURL   string
}

// CreateRoomRequest is POST /createRoom, already decoded.
type CreateRoomRequest struct {
	Creator        string
	CreatorProfile Profile
	// Visibility in the published directory: "public", "private" or "".
	Visibility    string
	RoomAliasName string
	Name          *string
	Topic         *string
	Invite        []string
	// InviteProfiles optionally gives invitees' profiles for their invite
	// events.
	InviteProfiles            map[string]Profile
	InitialState              []StateEvent
	Preset                    string
	IsDirect                  bool
	RoomVersion               string
	CreationContent           json.RawMessage
	PowerLevelContentOverride json.RawMessage
}

// CreateRoom creates a room with the events the spec's createRoom order
// implies, all in one transaction, and returns its ID. Errors:
// M_UNSUPPORTED_ROOM_VERSION, M_ROOM_IN_USE (alias taken), M_INVALID_PARAM,
// M_BAD_JSON, M_TOO_LARGE, M_INVALID_ROOM_STATE (the implied state fails
// the auth rules).
func (s *Service) CreateRoom(ctx context.Context, req CreateRoomRequest) (string, error) {
	plan, err := s.planRoom(ctx, req)
	if err != nil {
		return "", err
	}
	return s.createPlanned(ctx, plan)
}

// roomPlan is a validated createRoom: the events to build, in order.
type roomPlan struct {
	version    gmsl.IRoomVersion
	creator    string
	create     json.RawMessage
	events     []proto // after the create event
	alias      string
	visibility string
	// afterCreate runs in the worker once the room exists in the overlay
	// (the upgrade path moves aliases and links the old room).
	moveAliasesFrom int64
}

func (s *Service) planRoom(ctx context.Context, req CreateRoomRequest) (*roomPlan, error) {
	if err := checkUserID(req.Creator); err != nil {
		return nil, err
	}
	if domainOf(req.Creator) != s.cfg.ServerName {
		return nil, apierr.Forbidden("only local users can create rooms here")
	}
	version := req.RoomVersion
	if version == "" {
		version = s.cfg.DefaultRoomVersion
	}
	if !creatable(version) {
		return nil, apierr.New(400, "M_UNSUPPORTED_ROOM_VERSION", "this server cannot create rooms of that version")
	}
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(version))
	preset := req.Preset
	switch req.Visibility {
	case "", "private":
		if preset == "" {
			preset = PresetPrivateChat
		}
	case "public":
		if preset == "" {
			preset = PresetPublicChat
		}
	default:
		return nil, apierr.InvalidParam("visibility must be public or private")
	}
	switch preset {
	case PresetPrivateChat, PresetTrustedPrivateChat, PresetPublicChat:
	default:
		return nil, apierr.InvalidParam("unknown preset")
	}
	invites := slices.Clone(req.Invite)
	slices.Sort(invites)
	invites = slices.Compact(invites)
	for _, u := range invites {
		if err := checkUserID(u); err != nil {
			return nil, err
		}
		if domainOf(u) != s.cfg.ServerName {
			return nil, apierr.Forbidden("inviting users on other servers needs federation, which this server does not offer yet")
		}
	}
	invites = slices.DeleteFunc(invites, func(u string) bool { return u == req.Creator })

	plan := &roomPlan{version: verImpl, creator: req.Creator, visibility: req.Visibility}

	// 1. m.room.create
	create, err := objectOrEmpty(req.CreationContent, "creation_content")
	if err != nil {
		return nil, err
	}
	create["room_version"] = version
	if preV11(version) {
		create["creator"] = req.Creator
	} else {
		delete(create, "creator")
	}
	if verImpl.PrivilegedCreators() {
		var extra []string
		if raw, ok := create["additional_creators"]; ok {
			b, _ := json.Marshal(raw)
			if err := json.Unmarshal(b, &extra); err != nil {
				return nil, apierr.BadJSON("additional_creators must be a list of user IDs")
			}
		}
		if preset == PresetTrustedPrivateChat {
			extra = append(extra, invites...)
		}
		extra = slices.DeleteFunc(extra, func(u string) bool { return u == req.Creator })
		slices.Sort(extra)
		extra = slices.Compact(extra)
		for _, u := range extra {
			if err := checkUserID(u); err != nil {
				return nil, apierr.BadJSON("additional_creators must be a list of user IDs")
			}
		}
		if len(extra) > 0 {
			create["additional_creators"] = extra
		} else {
			delete(create, "additional_creators")
		}
	}
	if plan.create, err = json.Marshal(create); err != nil {
		return nil, err
	}

	initial := map[stateKey]json.RawMessage{}
	for _, ise := range req.InitialState {
		if ise.Type == "" {
			return nil, apierr.BadJSON("initial_state events need a type")
		}
		if err := canonicaljson.ValidateObject(ise.Content); err != nil {
			return nil, apierr.BadJSON("initial_state content must be a canonical JSON object")
		}
		initial[stateKey{ise.Type, ise.StateKey}] = ise.Content
	}
	add := func(typ, key string, content any) error {
		raw, err := json.Marshal(content)
		if err != nil {
			return err
		}
		k := key
		plan.events = append(plan.events, proto{sender: req.Creator, typ: typ, stateKey: &k, content: raw})
		return nil
	}

	// 2. the creator joins
	if err := add(spec.MRoomMember, req.Creator, memberContent(spec.Join, req.CreatorProfile, "", false)); err != nil {
		return nil, err
	}

	// 3. m.room.power_levels: initial_state's if given, else the defaults;
	// then the override on top.
	pl := defaultPowerLevels(req.Creator, preset, invites, verImpl)
	if raw, ok := initial[stateKey{spec.MRoomPowerLevels, ""}]; ok {
		pl = map[string]any{}
		if err := json.Unmarshal(raw, &pl); err != nil {
			return nil, apierr.BadJSON("invalid power levels in initial_state")
		}
		delete(initial, stateKey{spec.MRoomPowerLevels, ""})
	}
	if len(req.PowerLevelContentOverride) > 0 {
		override, err := objectOrEmpty(req.PowerLevelContentOverride, "power_level_content_override")
		if err != nil {
			return nil, err
		}
		for k, v := range override {
			pl[k] = v
		}
	}
	if err := add(spec.MRoomPowerLevels, "", pl); err != nil {
		return nil, err
	}

	// 4. m.room.canonical_alias
	if req.RoomAliasName != "" {
		alias := "#" + req.RoomAliasName + ":" + s.cfg.ServerName
		if err := checkAlias(alias); err != nil {
			return nil, err
		}
		if _, err := s.store.AliasByName(ctx, alias); err == nil {
			return nil, apierr.New(400, "M_ROOM_IN_USE", "room alias already taken")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		plan.alias = alias
		if err := add(spec.MRoomCanonicalAlias, "", map[string]any{"alias": alias}); err != nil {
			return nil, err
		}
	}

	// 5. the preset's state, unless initial_state sets it
	joinRule, guest := spec.Invite, "can_join"
	if preset == PresetPublicChat {
		joinRule, guest = spec.Public, "forbidden"
	}
	for _, p := range []struct {
		typ     string
		content map[string]any
	}{
		{spec.MRoomJoinRules, map[string]any{"join_rule": joinRule}},
		{spec.MRoomHistoryVisibility, map[string]any{"history_visibility": "shared"}},
		{"m.room.guest_access", map[string]any{"guest_access": guest}},
	} {
		if _, ok := initial[stateKey{p.typ, ""}]; ok {
			continue
		}
		if err := add(p.typ, "", p.content); err != nil {
			return nil, err
		}
	}

	// 6. initial_state in order (name and topic give way to the parameters)
	for _, ise := range req.InitialState {
		k := stateKey{ise.Type, ise.StateKey}
		if _, ok := initial[k]; !ok {
			continue // power levels, already sent
		}
		if (ise.Type == spec.MRoomName && req.Name != nil) || (ise.Type == spec.MRoomTopic && req.Topic != nil) {
			if ise.StateKey == "" {
				continue
			}
		}
		key := ise.StateKey
		plan.events = append(plan.events, proto{sender: req.Creator, typ: ise.Type, stateKey: &key, content: ise.Content})
	}

	// 7. name and topic
	if req.Name != nil {
		if err := add(spec.MRoomName, "", map[string]any{"name": *req.Name}); err != nil {
			return nil, err
		}
	}
	if req.Topic != nil {
		if err := add(spec.MRoomTopic, "", map[string]any{"topic": *req.Topic,
			"m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic, "mimetype": "text/plain"}}}}); err != nil {
			return nil, err
		}
	}

	// 8. invites
	for _, u := range invites {
		if err := add(spec.MRoomMember, u, memberContent(spec.Invite, req.InviteProfiles[u], "", req.IsDirect)); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

func objectOrEmpty(raw json.RawMessage, what string) (map[string]any, error) {
	m := map[string]any{}
	if len(raw) == 0 || string(raw) == "null" {
		return m, nil
	}
	if err := canonicaljson.ValidateObject(raw); err != nil {
		return nil, apierr.BadJSON(what + " must be a canonical JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, apierr.BadJSON(what + " must be an object")
	}
	return m, nil
}

func memberContent(membership string, p Profile, reason string, isDirect bool) map[string]any {
	c := map[string]any{"membership": membership}
	if p.DisplayName != "" {
		c["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		c["avatar_url"] = p.AvatarURL
	}
	if reason != "" {
		c["reason"] = reason
	}
	if isDirect {
		c["is_direct"] = true
	}
	return c
}

// defaultPowerLevels is the initial m.room.power_levels content. Levels
// follow what clients expect from other homeservers; v12 leaves the
// creators out (they have unlimited power) and puts m.room.tombstone above
// state_default, as createRoom requires from v12.
func defaultPowerLevels(creator, preset string, invites []string, verImpl gmsl.IRoomVersion) map[string]any {
	users := map[string]any{}
	tombstone := 100
	if verImpl.PrivilegedCreators() {
		tombstone = 150
	} else {
		users[creator] = 100
		if preset == PresetTrustedPrivateChat {
			for _, u := range invites {
				users[u] = 100
			}
		}
	}
	invite := 0
	if preset == PresetPublicChat {
		invite = 50
	}
	return map[string]any{
		"users":         users,
		"users_default": 0,
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.canonical_alias":    50,
			"m.room.avatar":             50,
			"m.room.tombstone":          tombstone,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         invite,
	}
}

func preV11(v string) bool { return preV10(gmsl.RoomVersion(v)) || v == "10" }

// createPlanned builds the create event (which fixes a v12 room's ID),
// then builds the rest on the new room's worker and commits it all at once.
func (s *Service) createPlanned(ctx context.Context, plan *roomPlan) (string, error) {
	roomNID := s.roomNIDs.Add(1)
	roomID := ""
	if !plan.version.DomainlessRoomIDs() {
		roomID = "!" + rand.Text() + ":" + s.cfg.ServerName
	}
	scratch := s.newTxn(ctx, nil)
	scratch.id, scratch.nid, scratch.ver = roomID, roomNID, plan.version
	createKey := ""
	createEv, err := scratch.build(proto{sender: plan.creator, typ: spec.MRoomCreate, stateKey: &createKey, content: plan.create}, &builtEvent{})
	if err != nil {
		return "", invalidRoomState(err)
	}
	roomID = createEv.RoomID().String()
	now := s.cfg.Now().UnixMilli()

	_, err = s.do(ctx, roomID, func(ctx context.Context, t *stateTxn) (outcome, error) {
		if t.base != nil {
			return outcome{}, apierr.New(400, "M_ROOM_IN_USE", "a room with this ID already exists")
		}
		t.id, t.nid, t.ver = roomID, roomNID, plan.version
		if err := authorise(createEv, t, nil); err != nil {
			return outcome{}, invalidRoomState(err)
		}
		t.apply(createEv, &builtEvent{})
		for _, p := range plan.events {
			if _, err := t.build(p, &builtEvent{}); err != nil {
				return outcome{}, invalidRoomState(err)
			}
		}
		out := outcome{eventIDs: []string{createEv.EventID()}, created: true, isolated: plan.alias != ""}
		out.prepare = func(rw *storage.RoomWrite) {
			rw.NewRoom = &storage.RoomRow{NID: roomNID, RoomID: roomID, Version: string(plan.version.Version()),
				Creator: plan.creator, CreatedTS: now, Visibility: plan.visibility}
			if plan.alias != "" {
				rw.Aliases = []storage.NewAlias{{Alias: plan.alias, Creator: plan.creator, TS: now}}
			}
			rw.MoveAliasesFrom = plan.moveAliasesFrom
		}
		return out, nil
	})
	if errors.Is(err, storage.ErrConflict) {
		return "", apierr.New(400, "M_ROOM_IN_USE", "room alias already taken")
	}
	if err != nil {
		return "", err
	}
	s.roomIDs.Store(roomNID, roomID)
	return roomID, nil
}

// invalidRoomState maps an auth rejection during room creation to the
// spec's M_INVALID_ROOM_STATE; other errors pass through.
func invalidRoomState(err error) error {
	if e, ok := apierr.As(err); ok && e.Code == "M_FORBIDDEN" {
		return apierr.New(400, "M_INVALID_ROOM_STATE", "the requested initial state is not allowed: "+e.Msg)
	}
	return err
}
