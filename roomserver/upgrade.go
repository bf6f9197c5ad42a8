package roomserver

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
)

// UpgradeRequest is POST /rooms/{roomId}/upgrade.
type UpgradeRequest struct {
	RoomID     string
	Sender     string
	NewVersion string
	// AdditionalCreators of the new room when its version has them (v12+);
	// ignored otherwise. The old room's are not carried over.
	AdditionalCreators []string
	SenderProfile      Profile
}

// transferredState is the state copied to the replacement room (the
// spec's recommended list, plus the canonical alias, whose aliases move).
var transferredState = []string{"m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.guest_access", "m.room.history_visibility", "m.room.join_rules", "m.room.canonical_alias"}

// Upgrade replaces a room with a new one of another version: the new room
// is created with a predecessor link, the transferable state and the local
// aliases (moved in the same transaction); then the old room gets an
// m.room.tombstone naming it and, where the sender may, power levels that
// stop ordinary members from sending and inviting. Returns the new room ID.
func (s *Service) Upgrade(ctx context.Context, req UpgradeRequest) (string, error) {
	if err := checkUserID(req.Sender); err != nil {
		return "", err
	}
	if !creatable(req.NewVersion) {
		return "", apierr.New(400, "M_UNSUPPORTED_ROOM_VERSION", "this server cannot create rooms of that version")
	}
	old, err := s.Room(ctx, req.RoomID)
	if err != nil {
		return "", err
	}
	m, err := old.Membership(ctx, req.Sender)
	if err != nil {
		return "", err
	}
	if m != spec.Join || !old.PowerLevels.CanSend(req.Sender, "m.room.tombstone", true) {
		return "", apierr.Forbidden("you cannot upgrade this room")
	}
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(req.NewVersion))
	state, err := old.State(ctx, append([]string{spec.MRoomPowerLevels}, transferredState...)...)
	if err != nil {
		return "", err
	}
	last, _, err := s.store.RoomByID(ctx, old.ID)
	if err != nil {
		return "", err
	}
	lastEvents, err := s.store.RoomEvents(ctx, last.NID, 0, s.notifier.Position(), 1, true)
	if err != nil {
		return "", err
	}

	create := map[string]any{"room_version": req.NewVersion}
	pred := map[string]any{"room_id": old.ID}
	if len(lastEvents) == 1 {
		pred["event_id"] = lastEvents[0].EventID
	}
	create["predecessor"] = pred
	if old.Type != "" {
		create["type"] = old.Type
	}
	if !old.Federate {
		create["m.federate"] = false
	}
	if preV11(req.NewVersion) {
		create["creator"] = req.Sender
	}
	var creators []string
	if verImpl.PrivilegedCreators() {
		creators = append(creators, req.Sender)
		var extra []string
		for _, u := range req.AdditionalCreators {
			if err := checkUserID(u); err != nil {
				return "", err
			}
			if u != req.Sender && !slices.Contains(extra, u) {
				extra = append(extra, u)
			}
		}
		if len(extra) > 0 {
			create["additional_creators"] = extra
			creators = append(creators, extra...)
		}
	}
	plan := &roomPlan{version: verImpl, creator: req.Sender, moveAliasesFrom: last.NID}
	if plan.create, err = json.Marshal(create); err != nil {
		return "", err
	}
	addRaw := func(typ, key string, content json.RawMessage) {
		k := key
		plan.events = append(plan.events, proto{sender: req.Sender, typ: typ, stateKey: &k, content: content})
	}
	join, _ := json.Marshal(memberContent(spec.Join, req.SenderProfile, "", false))
	addRaw(spec.MRoomMember, req.Sender, join)

	// Power levels: the old room's, with the upgrader able to send the
	// copied state, and without creators in users for v12+.
	pl := map[string]any{}
	for _, e := range state {
		if e.Type == spec.MRoomPowerLevels && e.StateKey != nil && *e.StateKey == "" {
			_ = json.Unmarshal(e.Content, &pl)
		}
	}
	if len(pl) == 0 {
		pl = defaultPowerLevels(req.Sender, PresetPrivateChat, nil, verImpl)
	}
	users := map[string]any{}
	if u, ok := pl["users"].(map[string]any); ok {
		users = u
	}
	if verImpl.PrivilegedCreators() {
		for _, c := range creators {
			delete(users, c)
		}
	} else {
		level := old.PowerLevels.UserLevel(req.Sender)
		if level < 100 || level > canonicalMax {
			level = max(100, min(level, canonicalMax))
		}
		users[req.Sender] = level
	}
	pl["users"] = users
	plRaw, err := json.Marshal(pl)
	if err != nil {
		return "", err
	}
	addRaw(spec.MRoomPowerLevels, "", plRaw)
	for _, typ := range transferredState {
		for _, e := range state {
			if e.Type == typ && e.StateKey != nil && *e.StateKey == "" {
				addRaw(typ, "", e.Content)
			}
		}
	}
	newID, err := s.createPlanned(ctx, plan)
	if err != nil {
		return "", err
	}

	// The old room: tombstone, then power levels that stop members.
	tomb, _ := json.Marshal(map[string]any{"body": "This room has been replaced", "replacement_room": newID})
	_, err = s.do(ctx, old.ID, func(ctx context.Context, t *stateTxn) (outcome, error) {
		if t.base == nil {
			return outcome{}, notFound("room")
		}
		empty := ""
		ev, err := t.build(proto{sender: req.Sender, typ: "m.room.tombstone", stateKey: &empty, content: tomb}, &builtEvent{})
		if err != nil {
			return outcome{}, err
		}
		ids := []string{ev.EventID()}
		l, err := loadLevels(t)
		if err == nil && l.has {
			plEv, _ := t.PowerLevels()
			var c map[string]any
			if json.Unmarshal(plEv.Content(), &c) == nil {
				restrict := max(int64(50), l.content.UsersDefault+1)
				c["events_default"], c["invite"] = restrict, restrict
				if raw, err := json.Marshal(c); err == nil {
					// Best effort: the spec asks for this "if possible".
					if ev, err := t.build(proto{sender: req.Sender, typ: spec.MRoomPowerLevels, stateKey: &empty, content: raw}, &builtEvent{}); err == nil {
						ids = append(ids, ev.EventID())
					}
				}
			}
		}
		return outcome{eventIDs: ids}, nil
	})
	if err != nil {
		return "", fmt.Errorf("tombstone %s: %w", old.ID, err)
	}
	return newID, nil
}

// canonicalMax is the largest power level canonical JSON can carry.
const canonicalMax = int64(1<<53 - 1)
