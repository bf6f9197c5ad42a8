package syncapi

import (
	"context"
	"encoding/json"
	"slices"
	"sort"

	"myelin/roomserver"
	"myelin/storage"
)

// builder assembles one sync response. Every read is batched across rooms:
// the number of queries depends on what the response contains, not on how
// many rooms the user is in.
type builder struct {
	s       *Service
	req     Request
	filter  *Filter
	rf      *RoomFilter
	since   *Token // nil: initial sync
	cur     Token
	dev     string // lazy cache key
	ignored map[string]bool
	resp    *Response

	roomIDs  map[int64]string
	results  []*roomResult
	byRoom   map[string]*roomResult
	joined   []storage.Member // rooms the user is joined to (room filter applied)
	invites  []storage.Member
	knocks   []storage.Member
	events   map[int64]*roomserver.Event
	stored   map[int64]storage.StoredEvent
	limit    int
	lazy     bool
	noRedund bool // skip redundant members

	pre prefetched // written only by the fetch goroutine until it ends
}

// prefetched holds the reads of the sections that do not depend on the
// rooms' timelines and states; one goroutine makes them while the room
// steps run, so a sync's latency is the longer of the two paths instead
// of their sum.
type prefetched struct {
	receipts          []storage.Receipt
	accountData       []storage.AccountData
	globalAccountData []json.RawMessage
	presence          []storage.Presence
	toDevice          []json.RawMessage
	toDeviceNext      int64
	changed, left     []string
	oneTimeKeys       map[string]int
	fallbackTypes     []string
}

// sincePos returns the since position of a stream (0 for initial syncs).
func (b *builder) sinceEvents() int64 {
	if b.since == nil {
		return 0
	}
	return b.since.Events
}

func (s *Service) build(ctx context.Context, req Request, filter *Filter, since *Token, cur Token) (*Response, error) {
	b := &builder{
		s: s, req: req, filter: filter, rf: filter.room(), cur: cur,
		dev: deviceKey(req.UserID, req.DeviceID), resp: newResponse(cur),
		roomIDs: map[int64]string{}, byRoom: map[string]*roomResult{},
		events: map[int64]*roomserver.Event{}, stored: map[int64]storage.StoredEvent{},
	}
	if since != nil {
		// A token ahead of the database (restored from an older backup)
		// cannot be served from; read from the present instead of never.
		t := *since
		t.Events = min(t.Events, cur.Events)
		t.AccountData = min(t.AccountData, cur.AccountData)
		t.Receipts = min(t.Receipts, cur.Receipts)
		t.Presence = min(t.Presence, cur.Presence)
		b.since = &t
	}
	b.limit = b.rf.Timeline.eventFilter().limit(defaultTimelineLimit)
	b.lazy = b.rf.State.lazyMembers()
	b.noRedund = b.lazy && !b.rf.State.redundantMembers()
	if b.since == nil && b.noRedund {
		b.s.lazy.reset(b.dev)
	}
	var err error
	if b.ignored, err = s.ignoredUsers(ctx, req.UserID); err != nil {
		return nil, err
	}
	if err := b.plan(ctx); err != nil {
		return nil, err
	}
	// The fetch goroutine reads only what plan decided (the joined rooms)
	// and writes only b.pre; the room steps do not touch b.pre. Both end
	// before the sections are put together.
	fetched := make(chan error, 1)
	go func() {
		fetched <- runSteps(ctx, b.fetchReceipts, b.fetchAccountData, b.fetchPresence, b.fetchProviders, b.waitCounts)
	}()
	err = runSteps(ctx, b.timelines, b.summaries, b.states, b.render, b.strippedRooms)
	if ferr := <-fetched; err == nil {
		err = ferr
	}
	if err == nil {
		err = runSteps(ctx, b.ephemeral, b.accountData, b.presence, b.providers)
	}
	if err != nil {
		return nil, err
	}
	b.dropEmptyRooms()
	return b.resp, nil
}

func runSteps(ctx context.Context, steps ...func(context.Context) error) error {
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// roomResult is one joined or left room's part of the response.
type roomResult struct {
	m       storage.Member
	section string // "join" or "leave"
	window  storage.EventWindow
	fresh   bool // send the full state, not a delta

	rows     []storage.StoredEvent // examined rows, newest first
	timeline []*roomserver.Event   // chronological
	limited  bool
	gap      bool // events of the window precede the first timeline event

	summary    *Summary
	wanted     map[string]bool // lazy-loading: member keys to send
	state      []*roomserver.Event
	stateAfter []*roomserver.Event

	join  *JoinedRoom
	leave *LeftRoom
}

// plan decides which rooms the response covers and with which windows of
// the event log.
func (b *builder) plan(ctx context.Context) error {
	members, err := b.s.userRooms(ctx, b.req.UserID)
	if err != nil {
		return err
	}
	changed := map[int64]int64{}
	if b.since != nil && b.since.Events < b.cur.Events {
		// From the roomserver's memory for a recent window (it names
		// every room, not only the user's: only theirs are looked up).
		var ok bool
		if changed, ok = b.s.rooms.RoomsChanged(b.since.Events, b.cur.Events); !ok {
			if changed, err = b.s.store.ChangedRooms(ctx, b.req.UserID, b.since.Events, b.cur.Events); err != nil {
				return err
			}
		}
	}
	initial := b.since == nil
	for _, m := range members {
		b.roomIDs[m.RoomNID] = m.RoomID
		if !b.rf.allowsRoom(m.RoomID) || m.EventNID > b.cur.Events {
			continue // filtered out, or a membership newer than this response
		}
		newSince := initial || m.EventNID > b.since.Events
		switch m.Membership {
		case "join":
			b.joined = append(b.joined, m)
			switch {
			case newSince:
				b.add(m, "join", 0, b.cur.Events, true)
			case b.req.FullState:
				b.add(m, "join", b.since.Events, b.cur.Events, true)
			case changed[m.RoomNID] != 0:
				b.add(m, "join", b.since.Events, b.cur.Events, false)
			}
		case "invite":
			if newSince {
				b.invites = append(b.invites, m)
			}
		case "knock":
			if newSince {
				b.knocks = append(b.knocks, m)
			}
		case "leave", "ban":
			switch {
			case initial && b.rf.IncludeLeave && !m.Forgotten:
				b.add(m, "leave", 0, m.EventNID, true)
			case !initial && m.EventNID > b.since.Events:
				// Even when forgotten since: the client's other devices
				// must learn that the user left.
				b.add(m, "leave", b.since.Events, m.EventNID, false)
			}
		}
	}
	return nil
}

func (b *builder) add(m storage.Member, section string, after, upTo int64, fresh bool) {
	r := &roomResult{m: m, section: section, fresh: fresh,
		window: storage.EventWindow{RoomNID: m.RoomNID, After: after, UpTo: upTo}}
	b.results = append(b.results, r)
	b.byRoom[m.RoomID] = r
}

// toEvents converts rows and remembers them by position.
func (b *builder) toEvents(ctx context.Context, rows []storage.StoredEvent) error {
	var fresh []storage.StoredEvent
	for _, r := range rows {
		if _, ok := b.events[r.NID]; !ok {
			fresh = append(fresh, r)
		}
	}
	evs, err := b.s.rooms.EventsFromLog(ctx, fresh, b.roomIDs)
	if err != nil {
		return err
	}
	for i, e := range evs {
		b.events[e.Position] = e
		b.stored[e.Position] = fresh[i]
	}
	b.s.events.put(fresh, evs)
	return nil
}

// latestRows returns the newest limit rows of every window, newest first
// within each room, as LatestEvents does, with each event in b.events.
// An initial sync reads the windows' event references and takes current
// events from the event cache, reading only the others; when most are
// missing (a cold cache) it reads the windows whole instead, one query.
// An incremental sync reads the windows whole: they are a few new events,
// and the listeners one message wakes all read them at the same moment,
// before any of them has cached them, so the references would be one
// more query each.
func (b *builder) latestRows(ctx context.Context, windows []storage.EventWindow, limit int) ([]storage.StoredEvent, error) {
	if b.since != nil {
		rows, err := b.s.store.LatestEvents(ctx, windows, limit)
		if err != nil {
			return nil, err
		}
		return rows, b.toEvents(ctx, rows)
	}
	refs, err := b.s.store.LatestEventRefs(ctx, windows, limit)
	if err != nil {
		return nil, err
	}
	var missing []int64
	for _, ref := range refs {
		if c, ok := b.s.events.get(ref); ok {
			b.events[ref.NID], b.stored[ref.NID] = c.ev, c.row
		} else {
			missing = append(missing, ref.NID)
		}
	}
	if 2*len(missing) > len(refs) {
		rows, err := b.s.store.LatestEvents(ctx, windows, limit)
		if err != nil {
			return nil, err
		}
		return rows, b.toEvents(ctx, rows)
	}
	if len(missing) > 0 {
		rows, err := b.s.store.EventsByNID(ctx, missing)
		if err != nil {
			return nil, err
		}
		if err := b.toEvents(ctx, rows); err != nil {
			return nil, err
		}
	}
	out := make([]storage.StoredEvent, 0, len(refs))
	for _, ref := range refs {
		// A row read after the references may carry a newer redaction;
		// b.stored has whichever copy was read last, which is current.
		if row, ok := b.stored[ref.NID]; ok {
			out = append(out, row)
		}
	}
	return out, nil
}

// maxScanPages bounds how far back one room's timeline looks for events
// the user may see; the client paginates further with /messages.
const maxScanPages = 10

// timelines reads the newest events of every window in one query, then
// picks each room's timeline: visible to the user, not from an ignored
// user, passing the timeline filter, at most limit events.
func (b *builder) timelines(ctx context.Context) error {
	if len(b.results) == 0 {
		return nil
	}
	windows := make([]storage.EventWindow, len(b.results))
	for i, r := range b.results {
		windows[i] = r.window
	}
	rows, err := b.latestRows(ctx, windows, b.limit+1)
	if err != nil {
		return err
	}
	perRoom := map[int64][]storage.StoredEvent{}
	for _, r := range rows {
		perRoom[r.RoomNID] = append(perRoom[r.RoomNID], r)
	}
	for _, r := range b.results {
		// LatestEvents returns each room's rows newest first.
		if err := b.pickTimeline(ctx, r, perRoom[r.m.RoomNID]); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) pickTimeline(ctx context.Context, r *roomResult, page []storage.StoredEvent) error {
	tf := b.rf.Timeline
	roomAllowed := tf.allowsRoom(r.m.RoomID)
	var picked []*roomserver.Event // newest first
	pageSize := b.limit + 1
	for pages := 1; ; pages++ {
		visible, err := b.visible(ctx, r, page)
		if err != nil {
			return err
		}
		stopped := false
		for i, row := range page {
			if len(picked) == b.limit {
				r.limited, stopped = true, true
				break
			}
			r.rows = append(r.rows, row)
			e := b.events[row.NID]
			if roomAllowed && visible[i] && !b.ignoredEvent(e) && tf.allowsEvent(e.Type, e.Sender, e.Content) {
				picked = append(picked, e)
			}
		}
		if stopped {
			break
		}
		if len(page) < pageSize {
			break // the window is exhausted
		}
		if len(picked) == b.limit || pages == maxScanPages {
			r.limited = true // more events exist before the timeline
			break
		}
		oldest := page[len(page)-1].NID
		next, err := b.s.store.RoomEvents(ctx, r.m.RoomNID, r.window.After, oldest-1, pageSize, true)
		if err != nil {
			return err
		}
		if err := b.toEvents(ctx, next); err != nil {
			return err
		}
		page = next
	}
	slices.Reverse(picked)
	r.timeline = picked
	if len(picked) == 0 {
		r.gap = len(r.rows) > 0 || r.limited
	} else {
		first := picked[0].Position
		r.gap = r.limited || slices.ContainsFunc(r.rows, func(row storage.StoredEvent) bool { return row.NID < first })
	}
	return nil
}

// visible applies history visibility to one page of a room's rows. A
// joined user sees every event after their current membership event (the
// state at each of them has them joined), so only older events go through
// the roomserver's full check.
func (b *builder) visible(ctx context.Context, r *roomResult, page []storage.StoredEvent) ([]bool, error) {
	out := make([]bool, len(page))
	var check []*roomserver.Event
	var idx []int
	for i, row := range page {
		if r.section == "join" && row.NID > r.m.EventNID {
			out[i] = true
			continue
		}
		check = append(check, b.events[row.NID])
		idx = append(idx, i)
	}
	if len(check) == 0 {
		return out, nil
	}
	vis, err := b.s.rooms.Visible(ctx, b.req.UserID, check)
	if err != nil {
		return nil, err
	}
	ok := make(map[int64]bool, len(vis))
	for _, e := range vis {
		ok[e.Position] = true
	}
	for j, e := range check {
		out[idx[j]] = ok[e.Position]
	}
	return out, nil
}

// ignoredEvent: events from ignored users disappear, except state events
// ("Ignoring Users": state must still be sent).
func (b *builder) ignoredEvent(e *roomserver.Event) bool {
	return !e.IsState() && b.ignored[e.Sender]
}

// summaries computes m.joined_member_count, m.invited_member_count and
// m.heroes for joined rooms that are new to the client or whose members
// may have changed.
func (b *builder) summaries(ctx context.Context) error {
	var need []*roomResult
	for _, r := range b.results {
		if r.section != "join" {
			continue
		}
		if r.fresh || r.gap || slices.ContainsFunc(r.rows, func(row storage.StoredEvent) bool { return row.Type == "m.room.member" }) {
			need = append(need, r)
		}
	}
	if len(need) == 0 {
		return nil
	}
	nids := make([]int64, len(need))
	for i, r := range need {
		nids[i] = r.m.RoomNID
	}
	counts, err := b.s.store.MemberCounts(ctx, nids)
	if err != nil {
		return err
	}
	// Heroes are only required for rooms without a name or canonical alias.
	named := map[int64]bool{}
	names, err := b.s.store.CurrentStateOfTypes(ctx, nids, []string{"m.room.name", "m.room.canonical_alias"})
	if err != nil {
		return err
	}
	for _, e := range names {
		var c struct {
			Name  string `json:"name"`
			Alias string `json:"alias"`
		}
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(e.JSON, &ev)
		_ = json.Unmarshal(ev.Content, &c)
		if c.Name != "" || c.Alias != "" {
			named[e.RoomNID] = true
		}
	}
	var anon []int64
	for _, n := range nids {
		if !named[n] {
			anon = append(anon, n)
		}
	}
	candidates, err := b.s.store.HeroCandidates(ctx, anon, b.req.UserID, 5)
	if err != nil {
		return err
	}
	for _, r := range need {
		joined, invited := counts[r.m.RoomNID]["join"], counts[r.m.RoomNID]["invite"]
		r.summary = &Summary{JoinedMemberCount: &joined, InvitedMemberCount: &invited}
		if !named[r.m.RoomNID] {
			r.summary.Heroes = heroes(candidates[r.m.RoomNID])
		}
	}
	return nil
}

// heroes picks the first five joined or invited members by stream order,
// or the first five who left or were banned when there are none.
func heroes(ms []storage.Member) []string {
	pick := func(memberships ...string) []string {
		var sel []storage.Member
		for _, m := range ms {
			if slices.Contains(memberships, m.Membership) {
				sel = append(sel, m)
			}
		}
		sort.SliceStable(sel, func(i, j int) bool { return sel[i].EventNID < sel[j].EventNID })
		out := []string{}
		for _, m := range sel[:min(5, len(sel))] {
			out = append(out, m.UserID)
		}
		return out
	}
	if h := pick("join", "invite"); len(h) > 0 {
		return h
	}
	return pick("leave", "ban")
}
