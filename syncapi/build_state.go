package syncapi

import (
	"context"
	"maps"
	"slices"

	"myelin/roomserver"
	"myelin/storage"
)

type stateKey struct{ typ, key string }

// statePoint is the room state at a point of the event log: a state group,
// optionally with one key changed (the state before a state event is the
// group after it with that event's key set back to what it replaced).
type statePoint struct {
	group    int64
	patch    *stateKey
	patchNID int64 // 0 removes the key
}

// stateAt turns resolved groups into a point's state: key → event NID.
func stateAt(groups map[int64][]storage.StateEntry, p statePoint) map[stateKey]int64 {
	out := map[stateKey]int64{}
	for _, e := range groups[p.group] {
		out[stateKey{e.Type, e.StateKey}] = e.EventNID
	}
	if p.patch != nil {
		if p.patchNID == 0 {
			delete(out, *p.patch)
		} else {
			out[*p.patch] = p.patchNID
		}
	}
	return out
}

// roomState is the per-room plan of the state section.
type roomState struct {
	target  statePoint // start of the timeline, or its end with use_state_after
	base    statePoint // the since point, for a delta
	diff    bool       // state = target − base
	needEnd bool       // target is the window's end and has no row: look it up
	lazyRes bool       // target may be resolved with only the wanted members
}

// states computes each room's state (or state_after): the full state for
// rooms new to the client, otherwise what changed between since and the
// start (or end) of the timeline. Lazy-loading keeps only the members the
// client needs. Two or three queries for all rooms together.
func (b *builder) states(ctx context.Context) error {
	plans := make([]*roomState, len(b.results))
	needEnd := map[int64][]int64{} // window end → rooms
	var needSince []int64
	for i, r := range b.results {
		p := &roomState{}
		plans[i] = p
		b.wantMembers(r)
		switch {
		case !b.req.UseStateAfter && len(r.timeline) > 0:
			o := b.stored[r.timeline[0].Position]
			p.target = statePoint{group: o.StateGroup}
			if o.StateKey != nil {
				p.target.patch = &stateKey{o.Type, *o.StateKey}
				p.target.patchNID = o.ReplacesNID
			}
		case len(r.rows) > 0:
			p.target = statePoint{group: r.rows[0].StateGroup}
		default:
			p.needEnd = true
		}
		if !r.fresh {
			if b.req.UseStateAfter {
				p.diff = len(r.rows) > 0
			} else {
				p.diff = r.gap
			}
			if p.diff {
				needSince = append(needSince, r.m.RoomNID)
			}
			if !p.diff && !b.lazy {
				continue // nothing changed before the timeline: no state
			}
		}
		if p.needEnd {
			needEnd[r.window.UpTo] = append(needEnd[r.window.UpTo], r.m.RoomNID)
		}
		p.lazyRes = b.lazy && !p.diff
	}
	// Joined rooms' windows all end at the response's position; a left
	// room's ends at its departure.
	ends := map[int64]storage.StoredEvent{}
	for upTo, rooms := range needEnd {
		got, err := b.s.store.LastEventsAtOrBefore(ctx, rooms, upTo)
		if err != nil {
			return err
		}
		maps.Copy(ends, got)
	}
	var sinces map[int64]storage.StoredEvent
	if len(needSince) > 0 {
		var err error
		if sinces, err = b.s.store.LastEventsAtOrBefore(ctx, needSince, b.sinceEvents()); err != nil {
			return err
		}
	}
	var fullGroups, lazyGroups []int64
	var lazyKeys []string
	seenKey := map[string]bool{}
	for i, r := range b.results {
		p := plans[i]
		if p.needEnd {
			p.target = statePoint{group: ends[r.m.RoomNID].StateGroup}
		}
		if p.diff {
			p.base = statePoint{group: sinces[r.m.RoomNID].StateGroup}
			fullGroups = append(fullGroups, p.target.group, p.base.group)
			continue
		}
		if !r.fresh && !b.lazy {
			continue
		}
		if p.lazyRes {
			lazyGroups = append(lazyGroups, p.target.group)
			for k := range r.wanted {
				if !seenKey[k] {
					seenKey[k] = true
					lazyKeys = append(lazyKeys, k)
				}
			}
			continue
		}
		fullGroups = append(fullGroups, p.target.group)
	}
	full, err := b.s.store.StateAtGroups(ctx, fullGroups, nil, nil)
	if err != nil {
		return err
	}
	var lazyState map[int64][]storage.StateEntry
	if len(lazyGroups) > 0 {
		if lazyKeys == nil {
			lazyKeys = []string{}
		}
		if lazyState, err = b.s.store.StateAtGroups(ctx, lazyGroups, nil, lazyKeys); err != nil {
			return err
		}
	}

	// Choose the event NIDs each room sends.
	chosen := make([][]int64, len(b.results))
	var all []int64
	for i, r := range b.results {
		p := plans[i]
		if !r.fresh && !p.diff && !b.lazy {
			continue
		}
		src := full
		if p.lazyRes {
			src = lazyState
		}
		target := stateAt(src, p.target)
		var base map[stateKey]int64
		if p.diff {
			base = stateAt(full, p.base)
		}
		for k, nid := range target {
			isMember := k.typ == "m.room.member"
			switch {
			case p.diff && base[k] != nid:
				// Changed since the client's state: always sent (members
				// too: changes in a gap must not be lost).
			case !r.fresh && !isMember:
				continue // unchanged
			case b.lazy && isMember && !b.sendMember(r, k.key, nid, p):
				continue
			case !b.lazy && !r.fresh:
				continue
			}
			chosen[i] = append(chosen[i], nid)
			all = append(all, nid)
		}
	}
	var rows []storage.StoredEvent
	var missing []int64
	for _, nid := range all {
		if _, ok := b.events[nid]; !ok {
			missing = append(missing, nid)
		}
	}
	if len(missing) > 0 {
		if rows, err = b.s.store.EventsByNID(ctx, missing); err != nil {
			return err
		}
		if err := b.toEvents(ctx, rows); err != nil {
			return err
		}
	}
	sf := b.rf.State
	for i, r := range b.results {
		if !sf.allowsRoom(r.m.RoomID) {
			chosen[i] = nil
		}
		slices.Sort(chosen[i])
		var evs []*roomserver.Event
		for _, nid := range chosen[i] {
			e := b.events[nid]
			if e != nil && sf.allowsEvent(e.Type, e.Sender, e.Content) {
				evs = append(evs, e)
			}
		}
		if b.req.UseStateAfter {
			r.stateAfter = evs
		} else {
			r.state = evs
		}
	}
	return nil
}

// wantMembers is the set of members lazy-loading sends for a room: the
// senders of its timeline, the user when the room is new to the client
// (the spec requires their own membership then), and the heroes.
func (b *builder) wantMembers(r *roomResult) {
	if !b.lazy {
		return
	}
	r.wanted = map[string]bool{}
	for _, e := range r.timeline {
		r.wanted[e.Sender] = true
	}
	if r.fresh {
		r.wanted[b.req.UserID] = true
	}
	if r.summary != nil {
		for _, h := range r.summary.Heroes {
			r.wanted[h] = true
		}
	}
}

// sendMember decides whether lazy-loading sends member event nid (state
// key user) in the room's state: only wanted members, not when the client
// already has it, and not when the timeline carries that member's event
// before their first timeline event (the client reads it there).
func (b *builder) sendMember(r *roomResult, user string, nid int64, p *roomState) bool {
	if !r.wanted[user] {
		return false
	}
	if r.fresh && user == b.req.UserID {
		return true
	}
	if !b.req.UseStateAfter {
		for _, e := range r.timeline {
			if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == user {
				return false
			}
			if e.Sender == user {
				break
			}
		}
	}
	return !b.noRedund || b.since == nil || !b.s.lazy.redundant(b.dev, r.m.RoomID, user, nid, b.since.Events)
}
