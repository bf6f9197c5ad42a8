package roomserver

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"crypto/ed25519"
	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// This file is the roomserver's one auth path: every event, built locally
// or (later) received over federation, is checked by authorise against the
// room state before it.
//
// gomatrixserverlib's Allowed decides m.room.create events, and the alias
// and redaction rules of the oldest room versions (v1–v5, v1–v2). The rules
// for every other event are here, written from the spec's rules (rooms/v10–
// v12 "Authorisation rules", with the per-version hooks gmsl exposes for
// v1–v9 differences), because gmsl's versions diverge from the spec in ways
// clients can observe, and because they run for every event (parsed power
// levels and memberships are cached by the worker's state):
//   - gmsl treats m.room.aliases specially in every version (only v1–v5 do);
//   - it allows leave→leave for the sender (rule 5.5.1 rejects it);
//   - it lets a user with only the ban level unban (rule 5.5.3/5.5.4 also
//     require the kick level and a higher level than the target);
//   - it rejects knock→join under a public join rule (5.3.6 allows it) and
//     allows invite→join under a join rule other than invite/knock/
//     restricted/public (5.3.7 rejects it);
//   - third-party invites ignore a banned target, the token event's sender
//     and the single public_key property (5.4.1);
//   - in v12 it checks notification-level changes against the creator's
//     users_default level instead of their infinite level, and it compares
//     named levels by their defaults rather than by presence (10.6).

// authState is the room state an event is authorised against.
type authState interface {
	gmsl.AuthEventProvider
	// byID returns the state event with that ID if it is part of this
	// state, nil otherwise.
	byID(eventID string) gmsl.PDU
}

// signatureCheck verifies that ev is validly signed by server. Nil skips
// the check: events this server has just built and signed need none.
type signatureCheck func(server spec.ServerName, ev gmsl.PDU) error

// notAllowed is an auth-rule rejection. Reasons name the rule, not content.
type notAllowed struct{ reason string }

func (e *notAllowed) Error() string { return "event not allowed: " + e.reason }

func deny(format string, args ...any) error {
	return &notAllowed{reason: fmt.Sprintf(format, args...)}
}

// infinitePL stands for the unbounded power level of v12 room creators. It
// is above every level canonical JSON can express.
const infinitePL = math.MaxInt64

// userIDForSender maps a sender to a user ID; outside pseudo-ID rooms they
// are the same. Historical user IDs stay valid in old rooms.
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// authorise applies the authorisation rules to ev against st, the state
// before it. A rejection is a *notAllowed; gmsl panics on a few malformed
// inputs, which are turned into rejections too.
func authorise(ev gmsl.PDU, st authState, verify signatureCheck) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = deny("malformed event or state")
		}
	}()
	verImpl, err := gmsl.GetRoomVersion(ev.Version())
	if err != nil {
		return deny("unsupported room version %q", ev.Version())
	}
	if ev.Type() == spec.MRoomCreate {
		// Rule 1 covers every m.room.create; gmsl rejects a non-empty
		// state_key and prev_events. Rule 1.3 in every version (gmsl checks it only before v11).
		var c struct {
			RoomVersion *string `json:"room_version"`
		}
		if err := json.Unmarshal(ev.Content(), &c); err != nil {
			return deny("unparseable m.room.create content")
		}
		if c.RoomVersion != nil && !gmsl.KnownRoomVersion(gmsl.RoomVersion(*c.RoomVersion)) {
			return deny("m.room.create names an unknown room version")
		}
		return gmslAllowed(ev, st)
	}
	create, _ := st.Create()
	if create == nil {
		return deny("no m.room.create event in the room state")
	}
	// The create event's content is parsed by gmsl with a panic on bad
	// additional_creators; check the shape first.
	if _, err := parseCreate(create); err != nil {
		return deny("invalid m.room.create event in state")
	}
	// Rule 2 (v12) and the same-room check of earlier versions. Compared
	// as strings: gmsl's RoomID() re-parses (and panics on bad input).
	raw := gjson.GetBytes(ev.JSON(), "room_id").Str
	if !validRoomID(raw) {
		return deny("malformed room_id")
	}
	if raw != roomIDOfCreate(create) {
		return deny("room_id does not match the room's create event")
	}
	if err := checkAuthEvents(ev, st, verImpl); err != nil {
		return err
	}
	// Rule 4: m.federate.
	if err := checkFederate(ev, create); err != nil {
		return err
	}
	switch ev.Type() {
	case spec.MRoomMember:
		return memberAllowed(ev, st, verImpl, verify)
	case spec.MRoomPowerLevels:
		if ev.StateKeyEquals("") {
			return powerLevelsAllowed(ev, st, verImpl)
		}
	case spec.MRoomRedaction:
		// Rooms v1/v2 check redactions against the target's domain.
		if slices.Contains([]gmsl.RoomVersion{"1", "2"}, verImpl.Version()) {
			return gmslAllowed(ev, st)
		}
	case spec.MRoomAliases:
		// Rooms v1–v5 let a server set its own aliases without joining;
		// from v6 aliases are ordinary state (gmsl keeps the old rule).
		if slices.Contains([]gmsl.RoomVersion{"1", "2", "3", "4", "5"}, verImpl.Version()) {
			return gmslAllowed(ev, st)
		}
	}
	return ordinaryAllowed(ev, st)
}

// ordinaryAllowed is rules 6–9 for events without rules of their own.
func ordinaryAllowed(ev gmsl.PDU, st authState) error {
	sender := string(ev.SenderID())
	// 6
	if m, err := membershipOnly(st, sender); err != nil || m != spec.Join {
		return deny("sender is not joined to the room")
	}
	l, err := loadLevels(st)
	if err != nil {
		return deny("unparseable power levels or create event")
	}
	level := l.user(sender)
	// 7
	if ev.Type() == spec.MRoomThirdPartyInvite {
		if level >= l.content.Invite {
			return nil
		}
		return deny("sender's power level is below the invite level")
	}
	// 8
	if level < l.content.EventLevel(ev.Type(), ev.StateKey() != nil) {
		return deny("sender's power level is too low to send %s", ev.Type())
	}
	// 9
	if sk := ev.StateKey(); sk != nil && strings.HasPrefix(*sk, "@") && *sk != sender {
		return deny("state_key belongs to another user")
	}
	return nil
}

// validRoomID checks a room ID's grammar without regular expressions: a
// v12 ID is "!" and 43 URL-safe unpadded base64 characters; older ones are
// "!opaque:server".
func validRoomID(id string) bool {
	if len(id) < 2 || id[0] != '!' || len(id) > maxIDBytes {
		return false
	}
	if !strings.Contains(id, ":") {
		if len(id) != 44 {
			return false
		}
		for i := 1; i < len(id); i++ {
			c := id[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		return true
	}
	_, err := spec.NewRoomID(id)
	return err == nil
}

// roomIDOfCreate is the room a create event founds: its room_id, or in
// rooms with domainless IDs its event ID with the "!" sigil.
func roomIDOfCreate(create gmsl.PDU) string {
	if verImpl, err := gmsl.GetRoomVersion(create.Version()); err == nil && verImpl.DomainlessRoomIDs() {
		return "!" + strings.TrimPrefix(create.EventID(), "$")
	}
	return gjson.GetBytes(create.JSON(), "room_id").Str
}

// membershipOnly is a user's membership, from the state's cache when it
// keeps one.
func membershipOnly(st authState, userID string) (string, error) {
	if c, ok := st.(membershipCache); ok {
		return c.membership(userID)
	}
	m, _, err := membershipOf(st, userID)
	return m, err
}

// membershipCache and levelsCache let the worker's state answer the two
// questions every event asks without re-parsing JSON.
type membershipCache interface {
	membership(userID string) (string, error)
}

type levelsCache interface {
	cachedLevels() (levels, bool)
	storeLevels(levels)
}

func gmslAllowed(ev gmsl.PDU, st authState) error {
	if err := gmsl.Allowed(ev, st, userIDForSender); err != nil {
		return deny("%s", strings.TrimPrefix(err.Error(), "eventauth: "))
	}
	return nil
}

// checkAuthEvents applies rule 3 to the event's auth_events that are part
// of st: no duplicate (type, state_key) pairs, only the pairs the auth
// events selection algorithm picks, and (v12) never the create event.
// Entries outside st cannot be judged against it and are left to the
// federation input path, which authorises against the auth events too.
func checkAuthEvents(ev gmsl.PDU, st authState, verImpl gmsl.IRoomVersion) error {
	raw := gjson.GetBytes(ev.JSON(), "auth_events")
	if !raw.IsArray() {
		return deny("auth_events is not a list")
	}
	needed := gmsl.StateNeededForAuth([]gmsl.PDU{ev})
	allowed := map[gmsl.StateKeyTuple]bool{}
	for _, t := range needed.Tuples() {
		allowed[t] = true
	}
	if verImpl.DomainlessRoomIDs() {
		delete(allowed, gmsl.StateKeyTuple{EventType: spec.MRoomCreate})
	}
	seen := map[gmsl.StateKeyTuple]bool{}
	var bad error
	raw.ForEach(func(_, v gjson.Result) bool {
		id := v.Str
		if v.IsArray() { // v1/v2 event references: [id, hashes]
			id = v.Get("0").Str
		}
		ae := st.byID(id)
		if ae == nil {
			return true
		}
		t := gmsl.StateKeyTuple{EventType: ae.Type(), StateKey: *ae.StateKey()}
		if seen[t] {
			bad = deny("duplicate auth event for (%s, %s)", t.EventType, t.StateKey)
			return false
		}
		seen[t] = true
		if !allowed[t] {
			bad = deny("auth event (%s, %s) is not one the auth rules select", t.EventType, t.StateKey)
			return false
		}
		return true
	})
	return bad
}

func checkFederate(ev, create gmsl.PDU) error {
	var c struct {
		Federate *bool `json:"m.federate"`
	}
	_ = json.Unmarshal(create.Content(), &c)
	if c.Federate == nil || *c.Federate {
		return nil
	}
	if domainOf(string(ev.SenderID())) != domainOf(string(create.SenderID())) {
		return deny("room is not federated and the sender is on another server")
	}
	return nil
}

func domainOf(id string) string {
	_, d, _ := strings.Cut(id, ":")
	return d
}

// createInfo is what auth needs from the m.room.create event.
type createInfo struct {
	creators []string // v12: sender + additional_creators; earlier: the creator
	creator  string   // the single creator of v1–v11 rooms
	version  gmsl.IRoomVersion
}

func parseCreate(create gmsl.PDU) (createInfo, error) {
	var c struct {
		Creator            string          `json:"creator"`
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	if err := json.Unmarshal(create.Content(), &c); err != nil {
		return createInfo{}, err
	}
	verImpl, err := gmsl.GetRoomVersion(create.Version())
	if err != nil {
		return createInfo{}, err
	}
	info := createInfo{version: verImpl, creator: string(create.SenderID())}
	// Room versions before 11 name the creator in content; v11 dropped the
	// property in favour of the sender.
	if c.Creator != "" && !slices.Contains([]gmsl.RoomVersion{gmsl.RoomVersionV11, gmsl.RoomVersionV12}, create.Version()) {
		info.creator = c.Creator
	}
	if verImpl.PrivilegedCreators() {
		info.creators = []string{string(create.SenderID())}
		if len(c.AdditionalCreators) > 0 && string(c.AdditionalCreators) != "null" {
			var extra []string
			if err := json.Unmarshal(c.AdditionalCreators, &extra); err != nil {
				return createInfo{}, err
			}
			info.creators = append(info.creators, extra...)
		}
	}
	return info, nil
}

// levels is the effective power levels of a room for auth.
type levels struct {
	has     bool // an m.room.power_levels event exists
	content gmsl.PowerLevelContent
	create  createInfo
}

func loadLevels(st authState) (levels, error) {
	cache, cached := st.(levelsCache)
	if cached {
		if l, ok := cache.cachedLevels(); ok {
			return l, nil
		}
	}
	l, err := parseLevels(st)
	if err == nil && cached {
		cache.storeLevels(l)
	}
	return l, err
}

func parseLevels(st authState) (levels, error) {
	create, _ := st.Create()
	ci, err := parseCreate(create)
	if err != nil {
		return levels{}, err
	}
	l := levels{create: ci}
	pl, _ := st.PowerLevels()
	if pl == nil {
		l.content.Defaults()
		return l, nil
	}
	l.has = true
	l.content, err = gmsl.NewPowerLevelContentFromEvent(pl)
	return l, err
}

// user returns a user's power level, including v12 creators' infinite level
// and the creator's 100 when a pre-v12 room has no power levels yet.
func (l levels) user(userID string) int64 {
	if slices.Contains(l.create.creators, userID) {
		return infinitePL
	}
	if !l.has {
		if !l.create.version.PrivilegedCreators() && userID == l.create.creator {
			return 100
		}
		return 0
	}
	return l.content.UserLevel(spec.SenderID(userID))
}

func membershipOf(st authState, userID string) (string, gmsl.MemberContent, error) {
	ev, _ := st.Member(spec.SenderID(userID))
	if ev == nil {
		return spec.Leave, gmsl.MemberContent{Membership: spec.Leave}, nil
	}
	c, err := gmsl.NewMemberContentFromEvent(ev)
	if err != nil {
		return "", c, err
	}
	return c.Membership, c, nil
}

// memberAllowed is rule 5 of the authorisation rules.
func memberAllowed(ev gmsl.PDU, st authState, verImpl gmsl.IRoomVersion, verify signatureCheck) error {
	// 5.1
	if ev.StateKey() == nil {
		return deny("m.room.member without a state_key")
	}
	var content struct {
		Membership       *string         `json:"membership"`
		AuthorisedVia    string          `json:"join_authorised_via_users_server"`
		ThirdPartyInvite json.RawMessage `json:"third_party_invite"`
	}
	if err := json.Unmarshal(ev.Content(), &content); err != nil || content.Membership == nil {
		return deny("m.room.member without a membership")
	}
	membership := *content.Membership
	sender := string(ev.SenderID())
	target := *ev.StateKey()

	l, err := loadLevels(st)
	if err != nil {
		return deny("unparseable power levels or create event")
	}
	senderMembership, _, err := membershipOf(st, sender)
	if err != nil {
		return deny("unparseable membership of the sender")
	}
	targetMembership, _, err := membershipOf(st, target)
	if err != nil {
		return deny("unparseable membership of the target")
	}
	// The join rule's allow list is not an auth rule: the server that issues
	// a restricted join checks it and names an authorising user instead.
	joinRule := spec.Invite
	if jr, _ := st.JoinRules(); jr != nil {
		var c struct {
			JoinRule string `json:"join_rule"`
		}
		if err := json.Unmarshal(jr.Content(), &c); err != nil {
			return deny("unparseable join rules")
		}
		joinRule = c.JoinRule
	}

	// 5.2: a join authorised via another user must carry that user's
	// server's signature (v8+, where restricted joins exist).
	if content.AuthorisedVia != "" && verImpl.CheckRestrictedJoinsAllowed() == nil && verify != nil {
		if err := verify(spec.ServerName(domainOf(content.AuthorisedVia)), ev); err != nil {
			return deny("join_authorised_via_users_server's server has not signed the event")
		}
	}

	switch membership {
	case spec.Join:
		// 5.3.1
		create, _ := st.Create()
		if prev := ev.PrevEventIDs(); len(prev) == 1 && prev[0] == create.EventID() && target == l.create.creator {
			return nil
		}
		// 5.3.2
		if sender != target {
			return deny("sender cannot set another user's membership to join")
		}
		// 5.3.3
		if senderMembership == spec.Ban {
			return deny("sender is banned")
		}
		switch {
		case joinRule == spec.Invite || (joinRule == spec.Knock && knockRuleExists(verImpl, joinRule)):
			// 5.3.4
			if senderMembership == spec.Invite || senderMembership == spec.Join {
				return nil
			}
			return deny("join rule %q requires an invite", joinRule)
		case (joinRule == spec.Restricted && verImpl.CheckRestrictedJoinsAllowed() == nil) ||
			(joinRule == spec.KnockRestricted && knockRuleExists(verImpl, joinRule)):
			// 5.3.5
			if senderMembership == spec.Join || senderMembership == spec.Invite {
				return nil
			}
			via := content.AuthorisedVia
			if via == "" {
				return deny("restricted join without join_authorised_via_users_server")
			}
			viaMembership, _, err := membershipOf(st, via)
			if err != nil || viaMembership != spec.Join {
				return deny("join_authorised_via_users_server is not joined to the room")
			}
			if l.user(via) < l.content.Invite {
				return deny("join_authorised_via_users_server cannot invite")
			}
			return nil
		case joinRule == spec.Public:
			// 5.3.6
			return nil
		}
		// 5.3.7
		return deny("join rule %q does not allow joining", joinRule)

	case spec.Invite:
		// 5.4.1
		if len(content.ThirdPartyInvite) > 0 && string(content.ThirdPartyInvite) != "null" {
			return thirdPartyInviteAllowed(ev, st, content.ThirdPartyInvite, target, targetMembership)
		}
		// 5.4.2–5.4.5
		if senderMembership != spec.Join {
			return deny("sender is not joined to the room")
		}
		if targetMembership == spec.Join || targetMembership == spec.Ban {
			return deny("target cannot be invited while their membership is %q", targetMembership)
		}
		if l.user(sender) >= l.content.Invite {
			return nil
		}
		return deny("sender's power level is below the invite level")

	case spec.Leave:
		// 5.5.1
		if sender == target {
			if senderMembership == spec.Invite || senderMembership == spec.Join || senderMembership == spec.Knock {
				return nil
			}
			return deny("cannot leave from membership %q", senderMembership)
		}
		// 5.5.2–5.5.5
		if senderMembership != spec.Join {
			return deny("sender is not joined to the room")
		}
		sl, tl := l.user(sender), l.user(target)
		if targetMembership == spec.Ban && sl < l.content.Ban {
			return deny("sender's power level is below the ban level")
		}
		if sl >= l.content.Kick && tl < sl {
			return nil
		}
		return deny("sender's power level is too low to kick this user")

	case spec.Ban:
		// 5.6
		if senderMembership != spec.Join {
			return deny("sender is not joined to the room")
		}
		if sl, tl := l.user(sender), l.user(target); sl >= l.content.Ban && tl < sl {
			return nil
		}
		return deny("sender's power level is too low to ban this user")

	case spec.Knock:
		// 5.7 (knocking exists from v7; knock_restricted from v10)
		if !knockRuleExists(verImpl, joinRule) {
			return deny("join rule %q does not allow knocking", joinRule)
		}
		if sender != target {
			return deny("cannot knock on behalf of another user")
		}
		if senderMembership == spec.Ban || senderMembership == spec.Invite || senderMembership == spec.Join {
			return deny("cannot knock with membership %q", senderMembership)
		}
		return nil
	}
	// 5.8
	return deny("unknown membership %q", membership)
}

// knockRuleExists reports whether joinRule is a knocking rule the room
// version has: knock from v7, knock_restricted from v10. (gmsl accepts
// knock_restricted from v7, after an unstable proposal.)
func knockRuleExists(verImpl gmsl.IRoomVersion, joinRule string) bool {
	switch joinRule {
	case spec.Knock:
		return verImpl.CheckKnockingAllowed(string(verImpl.Version()), "", "", joinRule, "") == nil
	case spec.KnockRestricted:
		return verImpl.CheckKnockingAllowed(string(verImpl.Version()), "", "", joinRule, "") == nil &&
			verImpl.CheckRestrictedJoinsAllowed() == nil && !preV10(verImpl.Version())
	}
	return false
}

// preV10 reports the stable room versions before 10.
func preV10(v gmsl.RoomVersion) bool {
	switch v {
	case "1", "2", "3", "4", "5", "6", "7", "8", "9":
		return true
	}
	return false
}

// thirdPartyInviteAllowed is rule 5.4.1.
func thirdPartyInviteAllowed(ev gmsl.PDU, st authState, raw json.RawMessage, target, targetMembership string) error {
	if targetMembership == spec.Ban {
		return deny("target is banned")
	}
	var tpi struct {
		Signed *json.RawMessage `json:"signed"`
	}
	if err := json.Unmarshal(raw, &tpi); err != nil || tpi.Signed == nil {
		return deny("third_party_invite has no signed property")
	}
	var signed struct {
		MXID       *string                      `json:"mxid"`
		Token      *string                      `json:"token"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(*tpi.Signed, &signed); err != nil || signed.MXID == nil || signed.Token == nil {
		return deny("third_party_invite.signed lacks mxid or token")
	}
	if *signed.MXID != target {
		return deny("third_party_invite mxid does not match the state_key")
	}
	tpe, _ := st.ThirdPartyInvite(*signed.Token)
	if tpe == nil {
		return deny("no m.room.third_party_invite for the token")
	}
	if tpe.SenderID() != ev.SenderID() {
		return deny("sender did not send the m.room.third_party_invite")
	}
	var keys struct {
		PublicKey  string `json:"public_key"`
		PublicKeys []struct {
			PublicKey string `json:"public_key"`
		} `json:"public_keys"`
	}
	_ = json.Unmarshal(tpe.Content(), &keys)
	candidates := []string{keys.PublicKey}
	for _, k := range keys.PublicKeys {
		candidates = append(candidates, k.PublicKey)
	}
	for _, enc := range candidates {
		if enc == "" {
			continue
		}
		var pk spec.Base64Bytes
		if err := pk.Decode(enc); err != nil || len(pk) != ed25519.PublicKeySize {
			continue
		}
		for server, sigs := range signed.Signatures {
			for keyID := range sigs {
				if gmsl.VerifyJSON(server, gmsl.KeyID(keyID), ed25519.PublicKey(pk), *tpi.Signed) == nil {
					return nil
				}
			}
		}
	}
	return deny("no third_party_invite signature matches the invite's public keys")
}

// powerLevelsAllowed is rules 6–10 for m.room.power_levels.
func powerLevelsAllowed(ev gmsl.PDU, st authState, verImpl gmsl.IRoomVersion) error {
	sender := string(ev.SenderID())
	// 6
	if m, _, err := membershipOf(st, sender); err != nil || m != spec.Join {
		return deny("sender is not joined to the room")
	}
	old, err := loadLevels(st)
	if err != nil {
		return deny("unparseable power levels or create event")
	}
	senderLevel := old.user(sender)
	// 8
	if need := old.content.EventLevel(spec.MRoomPowerLevels, true); senderLevel < need {
		return deny("sender's power level is below the level for m.room.power_levels")
	}
	// 9
	if sk := *ev.StateKey(); strings.HasPrefix(sk, "@") && sk != sender {
		return deny("state_key belongs to another user")
	}
	// 10.1–10.3: shape. Integer-only parsing is a room-version rule (v10+).
	var newPL gmsl.PowerLevelContent
	newPL.Defaults()
	if err := verImpl.ParsePowerLevels(ev.Content(), &newPL); err != nil {
		return deny("power levels are not integers")
	}
	var newRaw, oldRaw plPresence
	if err := json.Unmarshal(ev.Content(), &newRaw); err != nil {
		return deny("unparseable power levels")
	}
	for u := range newPL.Users {
		if _, err := spec.NewUserID(u, true); err != nil {
			return deny("users contains an invalid user ID")
		}
	}
	// 10.4 (v12): creators cannot be listed.
	for _, c := range old.create.creators {
		if _, ok := newPL.Users[c]; ok {
			return deny("users must not contain a room creator")
		}
	}
	// 10.5
	if !old.has {
		return nil
	}
	pl, _ := st.PowerLevels()
	_ = json.Unmarshal(pl.Content(), &oldRaw)

	// 10.6: named levels added, changed or removed.
	named := []struct {
		key      string
		old, new int64
	}{
		{"users_default", old.content.UsersDefault, newPL.UsersDefault},
		{"events_default", old.content.EventsDefault, newPL.EventsDefault},
		{"state_default", old.content.StateDefault, newPL.StateDefault},
		{"ban", old.content.Ban, newPL.Ban},
		{"redact", old.content.Redact, newPL.Redact},
		{"kick", old.content.Kick, newPL.Kick},
		{"invite", old.content.Invite, newPL.Invite},
	}
	for _, n := range named {
		_, wasSet := oldRaw[n.key]
		_, isSet := newRaw[n.key]
		if wasSet == isSet && n.old == n.new {
			continue
		}
		if n.old > senderLevel || n.new > senderLevel {
			return deny("sender cannot change %s beyond their own power level", n.key)
		}
	}
	// 10.7–10.8: events, and notifications from v6.
	maps := []struct {
		name     string
		old, new map[string]int64
	}{{"events", old.content.Events, newPL.Events}}
	if !slices.Contains([]gmsl.RoomVersion{"1", "2", "3", "4", "5"}, verImpl.Version()) {
		// Before v6 notification levels are not checked; content.Notifications
		// holds the parsed values, with "room" defaulted — compare raw maps.
		maps = append(maps, struct {
			name     string
			old, new map[string]int64
		}{"notifications", rawLevels(oldRaw["notifications"]), rawLevels(newRaw["notifications"])})
	}
	for _, m := range maps {
		for k, ov := range m.old {
			if nv, ok := m.new[k]; (!ok || nv != ov) && ov > senderLevel {
				return deny("sender cannot change %s level above their own", m.name)
			}
		}
		for k, nv := range m.new {
			if ov, ok := m.old[k]; (!ok || nv != ov) && nv > senderLevel {
				return deny("sender cannot set %s level above their own", m.name)
			}
		}
	}
	// 10.9–10.10: users.
	for u, ov := range old.content.Users {
		nv, ok := newPL.Users[u]
		if ok && nv == ov {
			continue
		}
		if u != sender && ov >= senderLevel {
			return deny("sender cannot change the level of a user at or above their own")
		}
	}
	for u, nv := range newPL.Users {
		if ov, ok := old.content.Users[u]; ok && ov == nv {
			continue
		}
		if nv > senderLevel {
			return deny("sender cannot give a user a level above their own")
		}
	}
	return nil
}

// plPresence records which top-level keys a power-levels content has.
type plPresence map[string]json.RawMessage

// rawLevels reads a level map that was already validated by
// ParsePowerLevels; string levels of old room versions parse as numbers.
func rawLevels(raw json.RawMessage) map[string]int64 {
	out := map[string]int64{}
	if len(raw) == 0 {
		return out
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return out
	}
	for k, v := range m {
		var pl gmsl.PowerLevelContent
		if json.Unmarshal([]byte(`{"ban":`+string(v)+`}`), &pl) == nil {
			out[k] = pl.Ban
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			var n json.Number = json.Number(strings.TrimSpace(s))
			if i, err := n.Int64(); err == nil {
				out[k] = i
			}
		}
	}
	return out
}
