package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"

	"myelin/storage"
)

// roomState is what evaluation needs from a room's state at an event: its
// joined local members (→ display name), the joined count, power levels.
// It is keyed by state group, so consecutive messages in a room (which
// share one) read the state once.
type roomState struct {
	members      map[string]string
	joined       int
	users        map[string]int64
	usersDefault int64
	notifLevels  map[string]int64
	privileged   map[string]bool // v12 creators: above every power level
	hasPL        bool
	creator      string
}

func (st *roomState) power(userID string) int64 {
	if st.privileged[userID] {
		return math.MaxInt64
	}
	if !st.hasPL {
		if userID == st.creator {
			return 100
		}
		return 0
	}
	if p, ok := st.users[userID]; ok {
		return p
	}
	return st.usersDefault
}

// stateCache keeps the states of recent state groups (a group's state
// never changes).
type stateCache struct {
	mu    sync.Mutex
	max   int
	m     map[int64]*roomState
	order []int64
}

func newStateCache(max int) *stateCache { return &stateCache{max: max, m: map[int64]*roomState{}} }

func (c *stateCache) get(g int64) *roomState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[g]
}

func (c *stateCache) put(g int64, st *roomState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[g]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[g] = st
	c.order = append(c.order, g)
}

// level reads a power level, which older room versions allow as a string.
func level(raw json.RawMessage) (int64, bool) {
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if v, err := n.Int64(); err == nil {
			return v, true
		}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return v, true
		}
	}
	return 0, false
}

// roomStates resolves the states of several state groups, reading the
// uncached ones in two queries.
func (s *Service) roomStates(ctx context.Context, groups []int64) (map[int64]*roomState, error) {
	out := map[int64]*roomState{}
	var missing []int64
	for _, g := range groups {
		if _, done := out[g]; done {
			continue
		}
		if st := s.states.get(g); st != nil {
			out[g] = st
		} else {
			out[g] = nil
			missing = append(missing, g)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	entries, err := s.sync.StateAtGroups(ctx, missing, []string{"m.room.member", "m.room.power_levels", "m.room.create"}, nil)
	if err != nil {
		return nil, fmt.Errorf("read room state: %w", err)
	}
	var nids []int64
	seen := map[int64]bool{}
	for _, es := range entries {
		for _, e := range es {
			if !seen[e.EventNID] {
				seen[e.EventNID] = true
				nids = append(nids, e.EventNID)
			}
		}
	}
	byNID := map[int64]storage.StoredEvent{}
	for start := 0; start < len(nids); start += 500 {
		evs, err := s.sync.EventsByNID(ctx, nids[start:min(start+500, len(nids))])
		if err != nil {
			return nil, fmt.Errorf("read room state events: %w", err)
		}
		for _, e := range evs {
			byNID[e.NID] = e
		}
	}
	for _, g := range missing {
		st := &roomState{members: map[string]string{}, notifLevels: map[string]int64{}}
		for _, ent := range entries[g] {
			ev, ok := byNID[ent.EventNID]
			if !ok {
				continue
			}
			var pdu struct {
				Sender  string          `json:"sender"`
				Content json.RawMessage `json:"content"`
			}
			if json.Unmarshal(ev.JSON, &pdu) != nil {
				continue
			}
			switch ent.Type {
			case "m.room.member":
				var c struct {
					Membership  string `json:"membership"`
					DisplayName any    `json:"displayname"`
				}
				if json.Unmarshal(pdu.Content, &c) != nil || c.Membership != "join" {
					continue
				}
				st.joined++
				if s.local(ent.StateKey) {
					name, _ := c.DisplayName.(string)
					st.members[ent.StateKey] = name
				}
			case "m.room.power_levels":
				var c struct {
					Users         map[string]json.RawMessage `json:"users"`
					UsersDefault  json.RawMessage            `json:"users_default"`
					Notifications map[string]json.RawMessage `json:"notifications"`
				}
				if json.Unmarshal(pdu.Content, &c) != nil {
					continue
				}
				st.hasPL, st.users = true, map[string]int64{}
				for u, raw := range c.Users {
					if v, ok := level(raw); ok {
						st.users[u] = v
					}
				}
				st.usersDefault, _ = level(c.UsersDefault)
				for k, raw := range c.Notifications {
					if v, ok := level(raw); ok {
						st.notifLevels[k] = v
					}
				}
			case "m.room.create":
				st.creator = pdu.Sender
				var c struct {
					RoomVersion        string   `json:"room_version"`
					AdditionalCreators []string `json:"additional_creators"`
				}
				_ = json.Unmarshal(pdu.Content, &c)
				// Room version 12: creators outrank every power level.
				if c.RoomVersion == "12" {
					st.privileged = map[string]bool{pdu.Sender: true}
					for _, u := range c.AdditionalCreators {
						st.privileged[u] = true
					}
				}
			}
		}
		s.states.put(g, st)
		out[g] = st
	}
	return out, nil
}
