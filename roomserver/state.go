package roomserver

import (
	"context"
	"fmt"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/storage"
)

// stateKey is a (type, state_key) pair.
type stateKey struct{ typ, key string }

// entry is one event in the room state. nid is 0 until the writer assigns
// the event its stream position; pdu is parsed on first use.
type entry struct {
	eventID string
	nid     int64
	pdu     gmsl.PDU
	// member is the parsed membership of an m.room.member entry ("" until
	// first asked).
	member string
}

// roomState is the worker's in-memory view of one room: current state keys
// and the head. It already includes events handed to the writer but not yet
// committed, which is what lets the worker pipeline: the next event is
// built on top of the previous one while that one is being committed.
type roomState struct {
	nid         int64
	id          string
	ver         gmsl.IRoomVersion
	cur         map[stateKey]*entry
	byEvent     map[string]stateKey
	group       int64
	groupDepth  int
	depth       int64
	extremities []string

	// levels caches the parsed power levels for the create and
	// power-levels entries they came from.
	levels                     levels
	levelsCreate, levelsPowers *entry
}

// loadRoomState reads a room's current state and head. ErrNotFound if the
// room is unknown.
func loadRoomState(ctx context.Context, store *storage.Rooms, roomID string) (*roomState, error) {
	row, head, err := store.RoomByID(ctx, roomID)
	if err != nil {
		return nil, err
	}
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(row.Version))
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", roomID, err)
	}
	refs, err := store.CurrentStateRefs(ctx, row.NID)
	if err != nil {
		return nil, err
	}
	depth, err := store.GroupDeltaDepth(ctx, head.StateGroup)
	if err != nil {
		return nil, fmt.Errorf("room %s head group: %w", roomID, err)
	}
	rs := &roomState{
		nid: row.NID, id: row.RoomID, ver: verImpl,
		cur:     make(map[stateKey]*entry, len(refs)),
		byEvent: make(map[string]stateKey, len(refs)),
		group:   head.StateGroup, groupDepth: depth, depth: head.Depth, extremities: head.Extremities,
	}
	for _, r := range refs {
		k := stateKey{r.Type, r.StateKey}
		rs.cur[k] = &entry{eventID: r.EventID, nid: r.EventNID}
		rs.byEvent[r.EventID] = k
	}
	return rs, nil
}

// builtEvent is an event built and authorised by a stateTxn, waiting for
// its stream position.
type builtEvent struct {
	pdu        gmsl.PDU
	ent        *entry // carries the nid once assigned
	group      int64  // state group after the event
	replaces   *entry // state events: the entry they replaced
	membership string
	txn        *storage.Txn
	redaction  *storage.Redaction // TargetNID and RedactedJSON set; ByNID filled at submit
	relation   *storage.Relation  // m.relates_to, stored with the event
}

// draftGroup is a state group created by a stateTxn; entries resolve to
// nids at submit.
type draftGroup struct {
	id, prev int64
	depth    int
	keys     []stateKey
	ents     []*entry
}

// stateTxn is a copy-on-write overlay on a roomState for one request: a
// request that builds several events (createRoom) sees each in the next,
// and a request that fails half-way leaves the room state untouched.
type stateTxn struct {
	ctx    context.Context
	svc    *Service
	worker *roomWorker // nil outside a room worker (scratch builds)
	base   *roomState  // nil for a room being created

	id          string
	nid         int64
	ver         gmsl.IRoomVersion
	set         map[stateKey]*entry
	setByID     map[string]stateKey
	added       int // keys in set not in base
	group       int64
	groupDepth  int
	depth       int64
	extremities []string

	events []*builtEvent
	groups []*draftGroup
}

func (s *Service) newTxn(ctx context.Context, base *roomState) *stateTxn {
	t := &stateTxn{ctx: ctx, svc: s, base: base, set: map[stateKey]*entry{}, setByID: map[string]stateKey{}}
	if base != nil {
		t.id, t.nid, t.ver = base.id, base.nid, base.ver
		t.group, t.groupDepth, t.depth = base.group, base.groupDepth, base.depth
		t.extremities = append([]string(nil), base.extremities...)
	}
	return t
}

func (t *stateTxn) lookup(k stateKey) *entry {
	if e, ok := t.set[k]; ok {
		return e
	}
	if t.base != nil {
		return t.base.cur[k]
	}
	return nil
}

// get returns the PDU for a state key, loading and parsing it on first use.
func (t *stateTxn) get(k stateKey) (gmsl.PDU, error) {
	e := t.lookup(k)
	if e == nil {
		return nil, nil
	}
	if e.pdu != nil {
		return e.pdu, nil
	}
	stored, err := t.svc.store.EventsByNID(t.ctx, []int64{e.nid})
	if err != nil {
		return nil, err
	}
	if len(stored) != 1 {
		return nil, fmt.Errorf("state event %s missing from the event log", e.eventID)
	}
	pdu, err := t.ver.NewEventFromTrustedJSONWithEventID(e.eventID, stored[0].JSON, stored[0].RedactedByNID != 0)
	if err != nil {
		return nil, fmt.Errorf("parse state event %s: %w", e.eventID, err)
	}
	// Parsed PDUs are immutable; sharing the cache between the overlay and
	// the base is safe.
	e.pdu = pdu
	return pdu, nil
}

func (t *stateTxn) Create() (gmsl.PDU, error)    { return t.get(stateKey{spec.MRoomCreate, ""}) }
func (t *stateTxn) JoinRules() (gmsl.PDU, error) { return t.get(stateKey{spec.MRoomJoinRules, ""}) }
func (t *stateTxn) PowerLevels() (gmsl.PDU, error) {
	return t.get(stateKey{spec.MRoomPowerLevels, ""})
}
func (t *stateTxn) Member(id spec.SenderID) (gmsl.PDU, error) {
	return t.get(stateKey{spec.MRoomMember, string(id)})
}
func (t *stateTxn) ThirdPartyInvite(token string) (gmsl.PDU, error) {
	return t.get(stateKey{spec.MRoomThirdPartyInvite, token})
}
func (t *stateTxn) Valid() bool { return true }

func (t *stateTxn) membership(userID string) (string, error) {
	e := t.lookup(stateKey{spec.MRoomMember, userID})
	if e == nil {
		return spec.Leave, nil
	}
	if e.member != "" {
		return e.member, nil
	}
	pdu, err := t.get(stateKey{spec.MRoomMember, userID})
	if err != nil {
		return "", err
	}
	c, err := gmsl.NewMemberContentFromEvent(pdu)
	if err != nil {
		return "", err
	}
	e.member = c.Membership
	return e.member, nil
}

// cachedLevels returns the worker's parsed power levels when neither the
// create nor the power-levels entry has changed since they were parsed.
func (t *stateTxn) cachedLevels() (levels, bool) {
	if t.base == nil || t.base.levelsCreate == nil {
		return levels{}, false
	}
	c, p := t.lookup(stateKey{spec.MRoomCreate, ""}), t.lookup(stateKey{spec.MRoomPowerLevels, ""})
	if c != t.base.levelsCreate || p != t.base.levelsPowers {
		return levels{}, false
	}
	return t.base.levels, true
}

// storeLevels caches levels parsed from the current entries. Only entries
// already in the base are cached, so a request that fails cannot leave its
// own power levels behind.
func (t *stateTxn) storeLevels(l levels) {
	if t.base == nil {
		return
	}
	c, p := t.lookup(stateKey{spec.MRoomCreate, ""}), t.lookup(stateKey{spec.MRoomPowerLevels, ""})
	if c == nil || c != t.base.cur[stateKey{spec.MRoomCreate, ""}] || p != t.base.cur[stateKey{spec.MRoomPowerLevels, ""}] {
		return
	}
	t.base.levels, t.base.levelsCreate, t.base.levelsPowers = l, c, p
}

func (t *stateTxn) byID(eventID string) gmsl.PDU {
	k, ok := t.setByID[eventID]
	if !ok && t.base != nil {
		k, ok = t.base.byEvent[eventID]
	}
	if !ok {
		return nil
	}
	e := t.lookup(k)
	if e == nil || e.eventID != eventID {
		return nil
	}
	pdu, err := t.get(k)
	if err != nil {
		return nil
	}
	return pdu
}

// stateSize is the number of keys in the state.
func (t *stateTxn) stateSize() int {
	n := t.added
	if t.base != nil {
		n += len(t.base.cur)
	}
	return n
}

// snapshotEvery bounds the delta chain. Large rooms snapshot less often so
// a snapshot's rows stay a small fraction per state event, while reading a
// state group stays one snapshot plus a bounded walk.
func snapshotEvery(size int) int {
	return max(100, size/8)
}

// apply records an authorised event in the overlay: state events replace
// their key and start a new state group.
func (t *stateTxn) apply(ev gmsl.PDU, be *builtEvent) {
	be.pdu = ev
	be.ent = &entry{eventID: ev.EventID(), pdu: ev}
	if sk := ev.StateKey(); sk != nil {
		k := stateKey{ev.Type(), *sk}
		prev := t.lookup(k)
		if prev == nil {
			t.added++
		} else {
			delete(t.setByID, prev.eventID)
		}
		be.replaces = prev
		t.set[k] = be.ent
		t.setByID[ev.EventID()] = k
		g := &draftGroup{id: t.svc.groupIDs.Add(1)}
		if t.group == 0 || t.groupDepth+1 > snapshotEvery(t.stateSize()) {
			g.keys, g.ents = t.fullState()
		} else {
			g.prev, g.depth = t.group, t.groupDepth+1
			g.keys, g.ents = []stateKey{k}, []*entry{be.ent}
		}
		t.groups = append(t.groups, g)
		t.group, t.groupDepth = g.id, g.depth
	}
	be.group = t.group
	t.depth = ev.Depth()
	t.extremities = []string{ev.EventID()}
	t.events = append(t.events, be)
}

func (t *stateTxn) fullState() ([]stateKey, []*entry) {
	keys := make([]stateKey, 0, t.stateSize())
	ents := make([]*entry, 0, t.stateSize())
	if t.base != nil {
		for k, e := range t.base.cur {
			if _, over := t.set[k]; !over {
				keys, ents = append(keys, k), append(ents, e)
			}
		}
	}
	for k, e := range t.set {
		keys, ents = append(keys, k), append(ents, e)
	}
	return keys, ents
}

// replaceEntry swaps the cached PDU of a state event (after a redaction)
// without touching the base until the request commits.
func (t *stateTxn) replaceEntry(k stateKey, pdu gmsl.PDU) {
	old := t.lookup(k)
	if old == nil {
		return
	}
	t.set[k] = &entry{eventID: old.eventID, nid: old.nid, pdu: pdu}
	t.setByID[old.eventID] = k
}

// toWrite turns the overlay into the storage write once the writer has
// assigned the first stream position. It runs under the writer's submit
// lock, so it only copies.
func (t *stateTxn) toWrite(first int64) *storage.RoomWrite {
	for i, be := range t.events {
		be.ent.nid = first + int64(i)
	}
	rw := &storage.RoomWrite{RoomNID: t.nid}
	for _, g := range t.groups {
		ng := storage.NewStateGroup{ID: g.id, PrevID: g.prev, DeltaDepth: g.depth, Entries: make([]storage.StateEntry, len(g.keys))}
		for i, k := range g.keys {
			ng.Entries[i] = storage.StateEntry{Type: k.typ, StateKey: k.key, EventNID: g.ents[i].nid}
		}
		rw.Groups = append(rw.Groups, ng)
	}
	for _, be := range t.events {
		ev := be.pdu
		ne := storage.NewEvent{
			NID: be.ent.nid, EventID: ev.EventID(), Type: ev.Type(), StateKey: ev.StateKey(), Sender: string(ev.SenderID()),
			Depth: ev.Depth(), OriginTS: int64(ev.OriginServerTS()), StateGroup: be.group, JSON: ev.JSON(),
			Membership: be.membership, Txn: be.txn, Relation: be.relation,
		}
		if be.replaces != nil {
			ne.ReplacesNID = be.replaces.nid
		}
		rw.Events = append(rw.Events, ne)
		if be.redaction != nil {
			rd := *be.redaction
			rd.ByNID = be.ent.nid
			rw.Redacts = append(rw.Redacts, rd)
		}
	}
	rw.Head = storage.RoomHead{StateGroup: t.group, Depth: t.depth, Extremities: t.extremities}
	if n := len(t.events); n > 0 {
		rw.Head.LastEventNID = t.events[n-1].ent.nid
	}
	return rw
}

// commitTo merges the overlay into the worker's state (after submit).
func (t *stateTxn) commitTo(rs *roomState) {
	for k, e := range t.set {
		if old := rs.cur[k]; old != nil {
			delete(rs.byEvent, old.eventID)
		}
		rs.cur[k] = e
		rs.byEvent[e.eventID] = k
	}
	rs.group, rs.groupDepth, rs.depth = t.group, t.groupDepth, t.depth
	rs.extremities = t.extremities
}

// newRoomState is the state of a room created by t.
func (t *stateTxn) newRoomState() *roomState {
	rs := &roomState{nid: t.nid, id: t.id, ver: t.ver, cur: map[stateKey]*entry{}, byEvent: map[string]stateKey{}}
	t.commitTo(rs)
	return rs
}
