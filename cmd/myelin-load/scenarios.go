package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Scenario 1: register N users (m.login.dummy UIA, or shared secret).
func (r *runner) registerScenario() scenario {
	n := r.opt.Users
	method := "m.login.dummy"
	if r.opt.SharedSecret != "" {
		method = "shared_secret"
	}
	var got []*user
	return scenario{
		name: "register", unit: "users",
		params: map[string]any{"users": n, "concurrency": r.opt.Concurrency, "method": method},
		setup:  func(context.Context) error { got = make([]*user, n); return nil },
		run: func(ctx context.Context) measure {
			m := runOps(ctx, n, r.opt.Concurrency, func(ctx context.Context, _, i int) error {
				u, err := r.registerOne(ctx)
				got[i] = u
				return err
			})
			// The users registered here are the pool later scenarios use.
			for _, u := range got {
				if u != nil {
					r.users = append(r.users, u)
				}
			}
			return m
		},
	}
}

// Scenario 2: createRoom throughput, C users creating rooms at once.
func (r *runner) createRoomScenario() scenario {
	n, c := r.opt.Rooms, r.opt.Concurrency
	return scenario{
		name: "create_room", unit: "rooms",
		params: map[string]any{"rooms": n, "concurrency": c, "preset": "public_chat"},
		setup:  func(ctx context.Context) error { return r.ensureUsers(ctx, c) },
		run: func(ctx context.Context) measure {
			return runOps(ctx, n, c, func(ctx context.Context, w, i int) error {
				_, err := r.c.createRoom(ctx, r.users[w], fmt.Sprintf("load room %d", i))
				return err
			})
		},
	}
}

// Scenario 3: a room fills to Members members, C joins at a time.
func (r *runner) joinScenario() scenario {
	n, c := r.opt.Members, r.opt.Concurrency
	var room string
	return scenario{
		name: "join", unit: "joins",
		params: map[string]any{"members": n, "concurrency": c},
		setup: func(ctx context.Context) error {
			if err := r.ensureUsers(ctx, n); err != nil {
				return err
			}
			var err error
			room, err = r.c.createRoom(ctx, r.users[0], "")
			return err
		},
		run: func(ctx context.Context) measure {
			m := runOps(ctx, n-1, c, func(ctx context.Context, _, i int) error {
				return r.c.join(ctx, r.users[i+1], room)
			})
			if m.errors == 0 {
				r.fullRoom = room
			}
			return m
		},
	}
}

// Scenario 4: C senders into one room of Members members.
func (r *runner) sendOneRoomScenario() scenario {
	n, c := r.opt.Messages, r.opt.Concurrency
	var room string
	return scenario{
		name: "send_one_room", unit: "messages",
		params: map[string]any{"messages": n, "concurrency": c, "members": max(r.opt.Members, c), "body_bytes": r.opt.MsgSize},
		setup: func(ctx context.Context) error {
			members := max(r.opt.Members, c)
			if err := r.ensureUsers(ctx, members); err != nil {
				return err
			}
			if r.fullRoom != "" && r.opt.Members >= c {
				room = r.fullRoom
				return nil
			}
			var err error
			room, err = r.roomWithMembers(ctx, r.users[:members])
			return err
		},
		run: func(ctx context.Context) measure {
			m := runOps(ctx, n, c, func(ctx context.Context, w, _ int) error {
				_, err := r.sendOne(ctx, r.users[w], room, r.content())
				return err
			})
			if m.ops > 0 {
				r.historyRoom, r.historyCount = room, m.ops
			}
			return m
		},
	}
}

// Scenario 5: C senders spread over SendRooms rooms (message i goes to room
// i mod SendRooms); every sender is a member of every room.
func (r *runner) sendManyRoomsScenario() scenario {
	n, c, k := r.opt.Messages, r.opt.Concurrency, r.opt.SendRooms
	var rooms []string
	return scenario{
		name: "send_many_rooms", unit: "messages",
		params: map[string]any{"messages": n, "concurrency": c, "rooms": k, "members": c, "body_bytes": r.opt.MsgSize},
		setup: func(ctx context.Context) error {
			if err := r.ensureUsers(ctx, c); err != nil {
				return err
			}
			rooms = make([]string, 0, k)
			for range k {
				room, err := r.roomWithMembers(ctx, r.users[:c])
				if err != nil {
					return err
				}
				rooms = append(rooms, room)
			}
			return nil
		},
		run: func(ctx context.Context) measure {
			return runOps(ctx, n, c, func(ctx context.Context, w, i int) error {
				_, err := r.sendOne(ctx, r.users[w], rooms[i%k], r.content())
				return err
			})
		},
	}
}

// seqKey carries a message's sequence number in its content, so a listener
// can match what it sees to the send that produced it even before the
// sender's PUT has returned the event ID.
const seqKey = "chat.myelin.load_seq"

const (
	initialSyncFilter = `{"room":{"timeline":{"limit":1}}}`
	longPollFilter    = `{"room":{"timeline":{"limit":100}}}`
	longPollMS        = 30000
)

// Scenario 6: one sender, K long-polling /sync listeners in the same room.
// Latency is from the start of a send to a listener receiving the sync
// answer carrying that event, over every (message, listener) pair.
func (r *runner) fanoutScenario() scenario {
	k, n := r.opt.Listeners, r.opt.FanoutMessages
	var room string
	var since []string
	return scenario{
		name: "send_sync_fanout", unit: "deliveries",
		params: map[string]any{"listeners": k, "messages": n, "send_interval_ms": ms(r.opt.FanoutInterval), "senders": 1},
		setup: func(ctx context.Context) error {
			if err := r.ensureUsers(ctx, k+1); err != nil {
				return err
			}
			var err error
			if room, err = r.roomWithMembers(ctx, r.users[:k+1]); err != nil {
				return err
			}
			since = make([]string, k)
			for l := range k {
				ans, err := r.c.sync(ctx, r.users[l+1], "", 0, initialSyncFilter)
				if err != nil {
					return fmt.Errorf("listener initial sync: %w", err)
				}
				since[l] = ans.NextBatch
			}
			return nil
		},
		run: func(ctx context.Context) measure { return r.fanout(ctx, room, since, n) },
	}
}

type observation struct {
	at      time.Time
	eventID string
}

func (r *runner) fanout(ctx context.Context, room string, since []string, n int) measure {
	k := len(since)
	seen := make([][]observation, k) // seen[listener][seq], written by that listener only
	listenErrs := make([]error, k)
	listenErrCount := make([]int, k)
	gots := make([]atomic.Int64, k) // messages each listener has seen so far
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for l := range k {
		seen[l] = make([]observation, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			listenErrCount[l], listenErrs[l] = r.listen(lctx, r.users[l+1], room, since[l], seen[l], &gots[l])
		}()
	}

	var m measure
	starts := make([]time.Time, n)
	ids := make([]string, n)
	sender := r.users[0]
	begin := time.Now()
	for i := range n {
		if ctx.Err() != nil {
			m.fail(fmt.Errorf("%d of %d messages not sent: %w", n-i, n, ctx.Err()))
			m.errors += n - i - 1
			break
		}
		content := r.content()
		content[seqKey] = i
		starts[i] = time.Now()
		id, err := r.sendOne(ctx, sender, room, content)
		if err != nil {
			m.fail(err)
		}
		ids[i] = id
		if r.opt.FanoutInterval > 0 && i < n-1 {
			_ = sleep(ctx, r.opt.FanoutInterval)
		}
	}
	// Wait until every listener has seen every message that was sent, all
	// listeners gave up, or the drain (how long a lagging or broken server
	// may hold us) is over; then stop the long polls.
	okSent := int64(0)
	for _, id := range ids {
		if id != "" {
			okSent++
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drain := time.NewTimer(r.opt.FanoutDrain)
	defer drain.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		all := true
		for l := range gots {
			all = all && gots[l].Load() >= okSent
		}
		if all {
			break
		}
		select {
		case <-done:
			break wait
		case <-drain.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	cancel()
	<-done

	last := begin
	missing := 0
	for l := range k {
		if listenErrCount[l] > 0 {
			m.errors += listenErrCount[l]
			if m.firstErr == nil {
				m.firstErr = fmt.Errorf("listener %d: %w", l, listenErrs[l])
			}
		}
		for i := range n {
			if ids[i] == "" {
				continue // the send failed; already counted
			}
			o := seen[l][i]
			switch {
			case o.at.IsZero():
				missing++
			case o.eventID != ids[i]:
				m.fail(fmt.Errorf("listener %d saw message %d as %s, the sender got %s", l, i, o.eventID, ids[i]))
			default:
				m.latencies = append(m.latencies, o.at.Sub(starts[i]))
				if o.at.After(last) {
					last = o.at
				}
			}
		}
	}
	if missing > 0 {
		m.fail(fmt.Errorf("%d (message, listener) pairs never seen within %s after the last send", missing, r.opt.FanoutDrain))
		m.errors += missing - 1
	}
	m.ops = len(m.latencies)
	m.elapsed = last.Sub(begin)
	return m
}

// listen long-polls /sync until it has seen all len(seen) messages, ctx
// ends (the fan-out cancels it once every sent message was seen), or it has
// polled a bounded number of times. It gives up after three
// failed polls in a row (a server without /sync fails fast).
func (r *runner) listen(ctx context.Context, u *user, room, since string, seen []observation, seenCount *atomic.Int64) (int, error) {
	n := len(seen)
	got, errs, streak := 0, 0, 0
	var firstErr error
	maxPolls := 4*n + 10
	for poll := 0; poll < maxPolls && got < n; poll++ {
		ans, err := r.c.sync(ctx, u, since, longPollMS, longPollFilter)
		at := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			errs++
			if firstErr == nil {
				firstErr = err
			}
			if streak++; streak >= 3 {
				break
			}
			_ = sleep(ctx, 100*time.Millisecond)
			continue
		}
		streak = 0
		since = ans.NextBatch
		for _, ev := range ans.Rooms.Join[room].Timeline.Events {
			if ev.Type != "m.room.message" {
				continue
			}
			var c map[string]json.RawMessage
			if json.Unmarshal(ev.Content, &c) != nil {
				continue
			}
			var seq int
			if raw, ok := c[seqKey]; !ok || json.Unmarshal(raw, &seq) != nil || seq < 0 || seq >= n {
				continue
			}
			if seen[seq].at.IsZero() {
				seen[seq] = observation{at: at, eventID: ev.EventID}
				got++
				seenCount.Store(int64(got))
			}
		}
	}
	return errs, firstErr
}

// Scenario 7: initial /sync of a user in SyncRooms rooms, each holding at
// least TimelineLimit messages, with a timeline limit filter.
func (r *runner) initialSyncScenario() scenario {
	rooms, limit, reps := r.opt.SyncRooms, r.opt.TimelineLimit, r.opt.SyncRepeats
	filter := fmt.Sprintf(`{"room":{"timeline":{"limit":%d}}}`, limit)
	var u *user
	return scenario{
		name: "initial_sync", unit: "syncs",
		params: map[string]any{"rooms": rooms, "timeline_limit": limit, "repeats": reps},
		setup: func(ctx context.Context) error {
			// A user of its own, so the rooms in its sync are exactly these.
			var err error
			if u, err = r.registerOne(ctx); err != nil {
				return err
			}
			ids := make([]string, rooms)
			m := runOps(ctx, rooms, r.opt.Concurrency, func(ctx context.Context, _, i int) error {
				var err error
				ids[i], err = r.c.createRoom(ctx, u, "")
				return err
			})
			if m.errors > 0 {
				return fmt.Errorf("create %d rooms: %w", rooms, m.firstErr)
			}
			m = runOps(ctx, rooms*limit, r.opt.Concurrency, func(ctx context.Context, _, i int) error {
				_, err := r.sendOne(ctx, u, ids[i%rooms], r.content())
				return err
			})
			if m.errors > 0 {
				return fmt.Errorf("send %d messages: %w", rooms*limit, m.firstErr)
			}
			return nil
		},
		run: func(ctx context.Context) measure {
			return runOps(ctx, reps, 1, func(ctx context.Context, _, _ int) error {
				ans, err := r.c.sync(ctx, u, "", 0, filter)
				if err != nil {
					return err
				}
				if got := len(ans.Rooms.Join); got != rooms {
					return fmt.Errorf("initial sync listed %d joined rooms, want %d", got, rooms)
				}
				for id, jr := range ans.Rooms.Join {
					if len(jr.Timeline.Events) > limit {
						return fmt.Errorf("room %s: %d timeline events despite the limit of %d", id, len(jr.Timeline.Events), limit)
					}
				}
				return nil
			})
		},
	}
}

// Scenario 8: /messages back-pagination (dir=b) through a room's history,
// PagePasses times; throughput is events per second.
func (r *runner) messagesScenario() scenario {
	limit, passes := r.opt.PageLimit, r.opt.PagePasses
	var room string
	var want int
	return scenario{
		name: "messages", unit: "events",
		params: map[string]any{"page_limit": limit, "passes": passes},
		setup: func(ctx context.Context) error {
			if r.historyRoom != "" {
				room, want = r.historyRoom, r.historyCount
				return nil
			}
			c := r.opt.Concurrency
			if err := r.ensureUsers(ctx, c); err != nil {
				return err
			}
			var err error
			if room, err = r.roomWithMembers(ctx, r.users[:c]); err != nil {
				return err
			}
			want = r.opt.Messages
			return r.fillRoom(ctx, room, r.users[:c], want)
		},
		run: func(ctx context.Context) measure {
			var m measure
			events := 0
			begin := time.Now()
			// Bounded in pages: the history plus the room's state, with slack.
			maxPages := want/limit + 50
			for range passes {
				if ctx.Err() != nil {
					m.fail(ctx.Err())
					break
				}
				from, messages := "", 0
				for page := 0; page < maxPages; page++ {
					t0 := time.Now()
					ans, err := r.c.messages(ctx, r.users[0], room, from, limit)
					if err != nil {
						m.fail(err)
						break
					}
					m.latencies = append(m.latencies, time.Since(t0))
					events += len(ans.Chunk)
					for _, ev := range ans.Chunk {
						if ev.Type == "m.room.message" {
							messages++
						}
					}
					if len(ans.Chunk) == 0 || ans.End == "" {
						break
					}
					from = ans.End
				}
				if messages < want {
					m.fail(fmt.Errorf("back-pagination returned %d of the room's %d messages", messages, want))
				}
			}
			m.elapsed = time.Since(begin)
			m.ops = len(m.latencies)
			m.units, m.hasUnits = events, true
			return m
		},
	}
}
