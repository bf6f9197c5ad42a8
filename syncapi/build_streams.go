package syncapi

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/tidwall/gjson"

	"myelin/roomserver"
	"myelin/storage"
)

// render turns each room's timeline and state into response entries: all
// rooms' events go through one ClientEvents call (two queries), then each
// is formatted as the filter asks.
func (b *builder) render(ctx context.Context) error {
	var all []*roomserver.Event
	for _, r := range b.results {
		all = append(all, r.timeline...)
		all = append(all, r.state...)
		all = append(all, r.stateAfter...)
	}
	ces, err := b.s.rooms.ClientEvents(ctx, all, roomserver.Viewer{UserID: b.req.UserID, DeviceID: b.req.DeviceID, Ignored: b.ignored})
	if err != nil {
		return err
	}
	mem, err := b.s.viewerMemberships(ctx, b.req.UserID, all,
		func(e *roomserver.Event) int64 { return b.stored[e.Position].StateGroup },
		func(roomID string) (string, int64) {
			if r := b.byRoom[roomID]; r != nil {
				return r.m.Membership, r.m.EventNID
			}
			return "", 0
		})
	if err != nil {
		return err
	}
	format := newEventFormat(b.filter, false)
	i := 0
	next := func(evs []*roomserver.Event) []json.RawMessage {
		out := make([]json.RawMessage, len(evs))
		for j, e := range evs {
			out[j] = format.render(ces[i], e, mem[e.Position])
			i++
		}
		return out
	}
	for _, r := range b.results {
		tl := Timeline{Events: next(r.timeline), Limited: r.limited}
		switch {
		case len(r.timeline) > 0:
			tl.PrevBatch = pageToken(r.timeline[0].Position - 1)
		default:
			tl.PrevBatch = pageToken(r.window.UpTo)
		}
		var state, after *EventBatch
		if b.req.UseStateAfter {
			after = &EventBatch{Events: next(r.stateAfter)}
		} else {
			state = &EventBatch{Events: next(r.state)}
		}
		if r.section == "join" {
			r.join = &JoinedRoom{Summary: r.summary, State: state, StateAfter: after, Timeline: tl,
				Ephemeral: EventBatch{Events: []json.RawMessage{}}, AccountData: EventBatch{Events: []json.RawMessage{}}}
			b.resp.Rooms.Join[r.m.RoomID] = r.join
		} else {
			r.leave = &LeftRoom{State: state, StateAfter: after, Timeline: tl, AccountData: EventBatch{Events: []json.RawMessage{}}}
			b.resp.Rooms.Leave[r.m.RoomID] = r.leave
		}
		if b.lazy {
			sent := map[string]int64{}
			for _, list := range [][]*roomserver.Event{r.state, r.stateAfter, r.timeline} {
				for _, e := range list {
					if e.Type == "m.room.member" && e.StateKey != nil {
						sent[*e.StateKey] = e.Position
					}
				}
			}
			b.s.lazy.record(b.dev, r.m.RoomID, sent, b.cur.Events)
		}
	}
	return nil
}

// joinEntry returns the joined room's entry, adding an empty one for rooms
// that only have ephemeral events or account data.
func (b *builder) joinEntry(roomID string) *JoinedRoom {
	if j := b.resp.Rooms.Join[roomID]; j != nil {
		return j
	}
	j := &JoinedRoom{Timeline: Timeline{Events: []json.RawMessage{}}, Ephemeral: EventBatch{Events: []json.RawMessage{}},
		AccountData: EventBatch{Events: []json.RawMessage{}}}
	if b.req.UseStateAfter {
		j.StateAfter = &EventBatch{Events: []json.RawMessage{}} // required, even empty
	}
	b.resp.Rooms.Join[roomID] = j
	return j
}

// strippedTypes are the state events stripped state carries.
var strippedTypes = []string{"m.room.create", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.join_rules", "m.room.canonical_alias", "m.room.encryption"}

// strippedRooms fills the invite and knock sections: the stripped state of
// the room at the membership event, and the membership event itself.
// Invites from ignored users are not sent.
func (b *builder) strippedRooms(ctx context.Context) error {
	ms := append(slices.Clone(b.invites), b.knocks...)
	if len(ms) == 0 {
		return nil
	}
	nids := make([]int64, len(ms))
	for i, m := range ms {
		nids[i] = m.EventNID
	}
	rows, err := b.s.store.EventsByNID(ctx, nids)
	if err != nil {
		return err
	}
	byNID := map[int64]storage.StoredEvent{}
	var groups []int64
	for _, r := range rows {
		byNID[r.NID] = r
		groups = append(groups, r.StateGroup)
	}
	state, err := b.s.store.StateAtGroups(ctx, groups, strippedTypes, []string{})
	if err != nil {
		return err
	}
	var stateNIDs []int64
	for _, entries := range state {
		for _, e := range entries {
			stateNIDs = append(stateNIDs, e.EventNID)
		}
	}
	stateRows, err := b.s.store.EventsByNID(ctx, stateNIDs)
	if err != nil {
		return err
	}
	for _, r := range stateRows {
		byNID[r.NID] = r
	}
	for _, m := range ms {
		ev, ok := byNID[m.EventNID]
		if !ok || ev.StateKey == nil {
			continue
		}
		if m.Membership == "invite" && b.ignored[ev.Sender] {
			continue
		}
		entries := state[ev.StateGroup]
		events := make([]json.RawMessage, 0, len(entries)+1)
		for _, e := range entries {
			if r, ok := byNID[e.EventNID]; ok {
				events = append(events, stripped(r.JSON, r.Type, e.StateKey, r.Sender))
			}
		}
		events = append(events, stripped(ev.JSON, ev.Type, *ev.StateKey, ev.Sender))
		if m.Membership == "invite" {
			b.resp.Rooms.Invite[m.RoomID] = &InvitedRoom{InviteState: EventBatch{Events: events}}
		} else {
			b.resp.Rooms.Knock[m.RoomID] = &KnockedRoom{KnockState: EventBatch{Events: events}}
		}
	}
	return nil
}

// ephemeral adds typing notifications and receipts to joined rooms.
func (b *builder) ephemeral(ctx context.Context) error {
	ef := b.rf.Ephemeral
	rooms := b.ephemeralRooms()
	if len(rooms) == 0 {
		return nil
	}
	initial := b.since == nil
	if ef.eventFilter().allowsType("m.typing") {
		var since int64
		if !initial {
			since = b.since.Typing
		}
		for room, users := range b.s.typing.changedSince(rooms, since, initial) {
			users = slices.DeleteFunc(users, func(u string) bool { return b.ignored[u] })
			ev, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
			j := b.joinEntry(room)
			j.Ephemeral.Events = append(j.Ephemeral.Events, ev)
		}
	}
	if ef.eventFilter().allowsType("m.receipt") {
		rs := slices.DeleteFunc(b.pre.receipts, func(r storage.Receipt) bool { return b.ignored[r.UserID] })
		for room, ev := range receiptEvents(rs) {
			j := b.joinEntry(room)
			j.Ephemeral.Events = append(j.Ephemeral.Events, ev)
		}
	}
	return nil
}

// ephemeralRooms are the joined rooms the ephemeral filter lets through.
func (b *builder) ephemeralRooms() []string {
	var rooms []string
	for _, m := range b.joined {
		if b.rf.Ephemeral.allowsRoom(m.RoomID) {
			rooms = append(rooms, m.RoomID)
		}
	}
	return rooms
}

// fetchReceipts reads the receipts ephemeral adds.
func (b *builder) fetchReceipts(ctx context.Context) error {
	if !b.rf.Ephemeral.eventFilter().allowsType("m.receipt") {
		return nil
	}
	rooms := b.ephemeralRooms()
	if len(rooms) == 0 {
		return nil
	}
	var since int64
	if b.since != nil {
		since = b.since.Receipts
	}
	if b.since != nil && since >= b.cur.Receipts {
		return nil
	}
	var err error
	b.pre.receipts, err = b.s.store.ReceiptsSince(ctx, rooms, b.req.UserID, since, b.cur.Receipts)
	return err
}

// allowsType applies types/not_types only: ephemeral events and account
// data have no sender to match.
func (e *EventFilter) allowsType(eventType string) bool {
	if e == nil {
		return true
	}
	if matchAny(e.NotTypes, eventType, true) {
		return false
	}
	return e.Types == nil || matchAny(e.Types, eventType, true)
}

// accountData adds global account data and the per-room account data of
// joined rooms and of left rooms in this response.
func (b *builder) accountData(context.Context) error {
	b.resp.AccountData.Events = append(b.resp.AccountData.Events, b.pre.globalAccountData...)
	joined := map[string]bool{}
	for _, m := range b.joined {
		joined[m.RoomID] = true
	}
	rf := b.rf.AccountData
	perRoom := map[string]int{}
	for _, a := range b.pre.accountData {
		if a.RoomID == "" {
			continue
		}
		ev := accountDataEvent(a.Type, a.Content)
		if !b.rf.allowsRoom(a.RoomID) || !rf.allowsRoom(a.RoomID) || !rf.eventFilter().allowsType(a.Type) ||
			perRoom[a.RoomID] >= rf.eventFilter().limit(maxEventLimit) {
			continue
		}
		switch {
		case joined[a.RoomID]:
			j := b.joinEntry(a.RoomID)
			j.AccountData.Events = append(j.AccountData.Events, ev)
		case b.resp.Rooms.Leave[a.RoomID] != nil:
			l := b.resp.Rooms.Leave[a.RoomID]
			l.AccountData.Events = append(l.AccountData.Events, ev)
		default:
			continue
		}
		perRoom[a.RoomID]++
	}
	return nil
}

// fetchAccountData reads the account data accountData adds and renders
// the global part, which depends on nothing else in the response.
func (b *builder) fetchAccountData(ctx context.Context) error {
	var since int64
	if b.since != nil {
		since = b.since.AccountData
		if since >= b.cur.AccountData {
			return nil
		}
	}
	rows, err := b.s.store.AccountDataSince(ctx, b.req.UserID, since, b.cur.AccountData)
	if err != nil {
		return err
	}
	b.pre.accountData = rows
	gf := b.filter.AccountData
	global := []json.RawMessage{}
	hasPushRules := false
	for _, a := range rows {
		if a.RoomID != "" {
			continue
		}
		hasPushRules = hasPushRules || a.Type == "m.push_rules"
		if gf.allowsType(a.Type) && len(global) < gf.limit(maxEventLimit) {
			global = append(global, accountDataEvent(a.Type, a.Content))
		}
	}
	// An initial sync always carries the push rules; a user who never
	// edited them has no stored m.push_rules, so the defaults come from
	// the provider.
	if p := b.s.opts.PushRules; p != nil && b.since == nil && !hasPushRules && gf.allowsType("m.push_rules") &&
		len(global) < gf.limit(maxEventLimit) {
		content, err := p.PushRulesContent(ctx, b.req.UserID)
		if err != nil {
			return err
		}
		global = append(global, accountDataEvent("m.push_rules", content))
	}
	b.pre.globalAccountData = global
	return nil
}

// presence adds the presence of the user and of users sharing a room
// that changed since the last sync, and — whatever its age — the presence
// of users who newly share a room with the user: every member of a room
// the user joined, and members who joined one of the user's rooms.
func (b *builder) presence(ctx context.Context) error {
	pf := b.filter.Presence
	if !pf.allowsType("m.presence") {
		return nil
	}
	rows := b.pre.presence
	if b.since != nil {
		extra, err := b.newlySharing(ctx)
		if err != nil {
			return err
		}
		if len(extra) > 0 {
			more, err := b.s.store.PresenceOfUsers(ctx, extra)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, p := range rows {
				seen[p.UserID] = true
			}
			for _, p := range more {
				if !seen[p.UserID] && p.StreamPos <= b.cur.Presence {
					rows = append(rows, p)
				}
			}
		}
	}
	limit := pf.limit(maxEventLimit)
	for _, p := range rows {
		if b.ignored[p.UserID] || !pf.allows("m.presence", p.UserID) {
			continue
		}
		if len(b.resp.Presence.Events) >= limit {
			break
		}
		b.resp.Presence.Events = append(b.resp.Presence.Events, b.s.presence.event(p))
	}
	return nil
}

// fetchPresence reads the presence changes presence adds.
func (b *builder) fetchPresence(ctx context.Context) error {
	if !b.filter.Presence.allowsType("m.presence") {
		return nil
	}
	var since int64
	if b.since != nil {
		since = b.since.Presence
	}
	if b.since != nil && since >= b.cur.Presence {
		return nil
	}
	var err error
	b.pre.presence, err = b.s.store.PresenceSince(ctx, b.req.UserID, since, b.cur.Presence)
	return err
}

// newlySharing lists the users who came to share a room with the user in
// this sync's window: the members of rooms the user newly joined, and
// users whose join is among a joined room's new events.
func (b *builder) newlySharing(ctx context.Context) ([]string, error) {
	var fresh []int64
	users := map[string]bool{}
	for _, r := range b.results {
		if r.section != "join" {
			continue
		}
		if r.m.EventNID > b.since.Events {
			fresh = append(fresh, r.m.RoomNID)
			continue
		}
		for _, row := range r.rows {
			if row.Type == "m.room.member" && row.StateKey != nil && *row.StateKey != b.req.UserID &&
				gjson.GetBytes(row.JSON, "content.membership").Str == "join" {
				users[*row.StateKey] = true
			}
		}
	}
	members, err := b.s.store.JoinedUsersIn(ctx, fresh)
	if err != nil {
		return nil, err
	}
	for _, u := range members {
		if u != b.req.UserID {
			users[u] = true
		}
	}
	out := make([]string, 0, len(users))
	for u := range users {
		out = append(out, u)
	}
	slices.Sort(out)
	return out, nil
}

// toDeviceLimit bounds the to-device messages of one response; the rest
// come with the next sync, which then returns at once.
const toDeviceLimit = 100

// fetchProviders asks the providers of the sections that depend on
// nothing else in the response: to-device messages, device lists, key
// counts. They write only b.pre; providers applies them.
func (b *builder) fetchProviders(ctx context.Context) error {
	o := b.s.opts
	u, d := b.req.UserID, b.req.DeviceID
	if p := o.ToDevice; p != nil {
		key := p.StreamKey()
		var since int64
		if b.since != nil {
			since = b.since.Ext[key]
		}
		// Called even when nothing new arrived (since == upTo): syncing from
		// since is what acknowledges the messages delivered up to it, so the
		// inbox deletes them here.
		evs, next, err := p.ToDevice(ctx, u, d, since, b.cur.Ext[key], toDeviceLimit)
		if err != nil {
			return err
		}
		b.pre.toDevice, b.pre.toDeviceNext = evs, next
	}
	if p := o.DeviceLists; p != nil {
		key := p.StreamKey()
		w := DeviceListWindow{Initial: b.since == nil, UpTo: b.cur.Ext[key], EventsUpTo: b.cur.Events}
		if b.since != nil {
			w.Since, w.EventsSince = b.since.Ext[key], b.since.Events
		}
		var err error
		if b.pre.changed, b.pre.left, err = p.DeviceListChanges(ctx, u, w); err != nil {
			return err
		}
	}
	if p := o.Keys; p != nil {
		var err error
		if b.pre.oneTimeKeys, err = p.OneTimeKeyCounts(ctx, u, d); err != nil {
			return err
		}
		if b.pre.fallbackTypes, err = p.UnusedFallbackKeyTypes(ctx, u, d); err != nil {
			return err
		}
	}
	return nil
}

// waitCounts lets the unread counter catch up with this response's
// position while the room steps run, when the response has joined rooms
// with events (their counts must be in it). UnreadCounts waits itself
// anyway; this only moves the wait earlier, so a wake-up for rooms the
// user is not in never waits for the counter.
func (b *builder) waitCounts(ctx context.Context) error {
	w, ok := b.s.opts.Unread.(CountWaiter)
	if !ok || (b.since != nil && b.since.Events >= b.cur.Events) {
		return nil
	}
	if slices.ContainsFunc(b.results, func(r *roomResult) bool { return r.section == "join" }) {
		w.WaitCounted(ctx, b.cur.Events)
	}
	return nil
}

// providers fills the sections other components own, or their empty
// values when no provider is configured: what fetchProviders read, and
// the unread counts of the joined rooms in the response.
func (b *builder) providers(ctx context.Context) error {
	o := b.s.opts
	u := b.req.UserID
	if p := o.ToDevice; p != nil {
		if b.pre.toDevice != nil {
			b.resp.ToDevice.Events = b.pre.toDevice
		}
		b.cur.Ext[p.StreamKey()] = b.pre.toDeviceNext
	}
	if b.pre.changed != nil {
		b.resp.DeviceLists.Changed = b.pre.changed
	}
	if b.pre.left != nil {
		b.resp.DeviceLists.Left = b.pre.left
	}
	for alg, n := range b.pre.oneTimeKeys {
		b.resp.DeviceOneTimeKeysCount[alg] = n
	}
	if b.pre.fallbackTypes != nil {
		b.resp.DeviceUnusedFallbackKeyTypes = b.pre.fallbackTypes
	}
	// Clients read a missing signed_curve25519 count as "unchanged" and
	// never replenish; the count of a device with no keys is zero.
	if _, ok := b.resp.DeviceOneTimeKeysCount["signed_curve25519"]; !ok {
		b.resp.DeviceOneTimeKeysCount["signed_curve25519"] = 0
	}
	b.resp.NextBatch = b.cur.String()

	if len(b.resp.Rooms.Join) == 0 {
		return nil
	}
	rooms := make([]string, 0, len(b.resp.Rooms.Join))
	for id := range b.resp.Rooms.Join {
		rooms = append(rooms, id)
	}
	slices.Sort(rooms)
	var counts map[string]UnreadCounts
	threads := b.rf.Timeline != nil && b.rf.Timeline.UnreadThreadNotifications
	if p := o.Unread; p != nil {
		var err error
		if counts, err = p.UnreadCounts(ctx, u, rooms, threads); err != nil {
			return err
		}
	}
	for _, id := range rooms {
		c := counts[id]
		j := b.resp.Rooms.Join[id]
		j.UnreadNotifications = NotificationCounts{HighlightCount: c.Highlight, NotificationCount: c.Notification}
		if threads && len(c.Threads) > 0 {
			j.UnreadThreadNotifications = map[string]NotificationCounts{}
			for t, tc := range c.Threads {
				j.UnreadThreadNotifications[t] = NotificationCounts{HighlightCount: tc.Highlight, NotificationCount: tc.Notification}
			}
		}
	}
	return nil
}

// dropEmptyRooms removes, from an incremental sync, joined rooms with
// nothing to say (all their new events were invisible or filtered), so a
// long-poll does not return for nothing.
func (b *builder) dropEmptyRooms() {
	if b.since == nil {
		return
	}
	for id, j := range b.resp.Rooms.Join {
		if len(j.Timeline.Events) == 0 && j.Summary == nil && len(j.Ephemeral.Events) == 0 && len(j.AccountData.Events) == 0 &&
			(j.State == nil || len(j.State.Events) == 0) && (j.StateAfter == nil || len(j.StateAfter.Events) == 0) {
			delete(b.resp.Rooms.Join, id)
		}
	}
}
