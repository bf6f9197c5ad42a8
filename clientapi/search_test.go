package clientapi

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// searchResults is the room_events part of a /search response.
type searchResults struct {
	Count      int      `json:"count"`
	Highlights []string `json:"highlights"`
	NextBatch  string   `json:"next_batch"`
	Results    []struct {
		Rank   float64 `json:"rank"`
		Result struct {
			EventID string         `json:"event_id"`
			RoomID  string         `json:"room_id"`
			Sender  string         `json:"sender"`
			Content map[string]any `json:"content"`
		} `json:"result"`
		Context *struct {
			Start        string            `json:"start"`
			End          string            `json:"end"`
			EventsBefore []json.RawMessage `json:"events_before"`
			EventsAfter  []json.RawMessage `json:"events_after"`
			ProfileInfo  map[string]struct {
				DisplayName string `json:"displayname"`
			} `json:"profile_info"`
		} `json:"context"`
	} `json:"results"`
	State  map[string][]json.RawMessage `json:"state"`
	Groups map[string]map[string]struct {
		Order   int      `json:"order"`
		Results []string `json:"results"`
	} `json:"groups"`
}

func (s *syncServer) search(token, nextBatch string, criteria map[string]any) searchResults {
	s.t.Helper()
	path := v3 + "/search"
	if nextBatch != "" {
		path += "?next_batch=" + esc(nextBatch)
	}
	r := s.do("POST", path, token, map[string]any{"search_categories": map[string]any{"room_events": criteria}})
	s.expect(r, 200, "")
	var out struct {
		SearchCategories struct {
			RoomEvents searchResults `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := json.Unmarshal([]byte(r.raw), &out); err != nil {
		s.t.Fatal(err)
	}
	return out.SearchCategories.RoomEvents
}

func resultIDs(r searchResults) []string {
	out := []string{}
	for _, x := range r.Results {
		out = append(out, x.Result.EventID)
	}
	return out
}

func TestSearchEndpoint(t *testing.T) {
	eachSyncEngine(t, nil, func(t *testing.T, s *syncServer) {
		aliceTok, _ := s.user("alice")
		bobTok, bob := s.user("bob")

		// Shared history: bob, joining later, sees what came before.
		shared := s.createRoom(aliceTok, map[string]any{"preset": "public_chat"})
		early := s.send(aliceTok, shared, "vaccine schedule for Biscuit")
		s.expect(s.do("POST", roomPath(shared, "/join"), bobTok, map[string]any{}), 200, "")
		bobsOwn := s.send(bobTok, shared, "vaccine vaccine vaccine reminder")

		// Joined-only history: nothing from before bob's join.
		joinedOnly := s.createRoom(aliceTok, map[string]any{"preset": "public_chat", "initial_state": []any{
			map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
		}})
		hidden := s.send(aliceTok, joinedOnly, "vaccine before bob joined")
		s.expect(s.do("POST", roomPath(joinedOnly, "/join"), bobTok, map[string]any{}), 200, "")
		afterJoin := s.send(aliceTok, joinedOnly, "vaccine after bob joined")

		// A room bob is not in.
		private := s.createRoom(aliceTok, map[string]any{"preset": "private_chat"})
		secret := s.send(aliceTok, private, "vaccine in a room bob never joined")

		// bob leaves the shared room; what follows is not his to read.
		s.expect(s.do("POST", roomPath(shared, "/leave"), bobTok, map[string]any{}), 200, "")
		afterLeave := s.send(aliceTok, shared, "vaccine after bob left")

		got := s.search(bobTok, "", map[string]any{"search_term": "Vaccine", "order_by": "recent"})
		if want := []string{afterJoin, bobsOwn, early}; !reflect.DeepEqual(resultIDs(got), want) {
			t.Fatalf("bob's results %v, want %v", resultIDs(got), want)
		}
		for _, id := range resultIDs(got) {
			if id == hidden || id == secret || id == afterLeave {
				t.Fatalf("bob sees %s", id)
			}
		}
		if got.Count < 3 || !slices.Contains(got.Highlights, "vaccine") || got.NextBatch != "" {
			t.Fatalf("count %d highlights %v next_batch %q", got.Count, got.Highlights, got.NextBatch)
		}
		if r := got.Results[0].Result; r.RoomID != joinedOnly || r.Content["body"] != "vaccine after bob joined" {
			t.Fatalf("first result %+v", r)
		}

		// alice sees all six; rank puts the thrice-repeated word first.
		all := s.search(aliceTok, "", map[string]any{"search_term": "vaccine"})
		if len(all.Results) != 6 || all.Count != 6 || all.Results[0].Result.EventID != bobsOwn {
			t.Fatalf("alice's ranked results %v (count %d)", resultIDs(all), all.Count)
		}
		for i := 1; i < len(all.Results); i++ {
			if all.Results[i].Rank > all.Results[i-1].Rank {
				t.Fatalf("ranks not descending")
			}
		}

		// Pagination: one result per page, in both orders, covers the set.
		for _, order := range []string{"rank", "recent"} {
			var pages []string
			next := ""
			for i := 0; i < 10; i++ {
				p := s.search(aliceTok, next, map[string]any{"search_term": "vaccine", "order_by": order, "filter": map[string]any{"limit": 2}})
				pages = append(pages, resultIDs(p)...)
				if next = p.NextBatch; next == "" {
					break
				}
			}
			want := resultIDs(all)
			if order == "recent" {
				want = []string{afterLeave, secret, afterJoin, hidden, bobsOwn, early}
			}
			if !reflect.DeepEqual(pages, want) {
				t.Fatalf("%s pages %v, want %v", order, pages, want)
			}
		}

		// Filters and keys.
		if r := s.search(aliceTok, "", map[string]any{"search_term": "vaccine", "filter": map[string]any{"rooms": []string{private}}}); !reflect.DeepEqual(resultIDs(r), []string{secret}) {
			t.Fatalf("rooms filter %v", resultIDs(r))
		}
		if r := s.search(aliceTok, "", map[string]any{"search_term": "vaccine", "filter": map[string]any{"senders": []string{bob}}}); !reflect.DeepEqual(resultIDs(r), []string{bobsOwn}) {
			t.Fatalf("senders filter %v", resultIDs(r))
		}
		if r := s.search(aliceTok, "", map[string]any{"search_term": "vaccine", "keys": []string{"content.topic"}}); len(r.Results) != 0 {
			t.Fatalf("topic key found messages %v", resultIDs(r))
		}

		// Context, profiles, groups and state.
		r := s.search(bobTok, "", map[string]any{"search_term": "reminder", "include_state": true,
			"event_context": map[string]any{"before_limit": 1, "after_limit": 1, "include_profile": true},
			"groupings":     map[string]any{"group_by": []any{map[string]any{"key": "room_id"}}}})
		if len(r.Results) != 1 || r.Results[0].Context == nil {
			t.Fatalf("context search %+v", r)
		}
		c := r.Results[0].Context
		if len(c.EventsBefore) != 1 || len(c.EventsAfter) != 1 || c.Start == "" || c.End == "" {
			t.Fatalf("context %+v", c)
		}
		if _, ok := c.ProfileInfo[bob]; !ok {
			t.Fatalf("profile_info %+v", c.ProfileInfo)
		}
		if g := r.Groups["room_id"][shared]; g.Order != 1 || !reflect.DeepEqual(g.Results, []string{bobsOwn}) {
			t.Fatalf("groups %+v", r.Groups)
		}
		if len(r.State[shared]) == 0 {
			t.Fatalf("state %+v", r.State)
		}
	})
}

func TestSearchBadInput(t *testing.T) {
	eachSyncEngine(t, nil, func(t *testing.T, s *syncServer) {
		tok, _ := s.user("alice")
		room := s.createRoom(tok, map[string]any{"preset": "private_chat"})
		s.send(tok, room, "hello there")
		for _, tc := range []struct {
			name, query string
			body        any
			status      int
			errcode     string
		}{
			{"not JSON", "", "{", 400, "M_NOT_JSON"},
			{"not an object", "", "[]", 400, "M_BAD_JSON"},
			{"no categories", "", map[string]any{}, 400, "M_BAD_JSON"},
			{"no search_term", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{}}}, 400, "M_BAD_JSON"},
			{"search_term not a string", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": 5}}}, 400, "M_BAD_JSON"},
			{"bad order_by", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "order_by": "oldest"}}}, 400, "M_INVALID_PARAM"},
			{"bad key", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "keys": []string{"content.format"}}}}, 400, "M_INVALID_PARAM"},
			{"bad group_by", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "groupings": map[string]any{"group_by": []any{map[string]any{"key": "type"}}}}}}, 400, "M_INVALID_PARAM"},
			{"negative context", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "event_context": map[string]any{"before_limit": -1}}}}, 400, "M_INVALID_PARAM"},
			{"bad filter", "", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "filter": map[string]any{"rooms": []string{"nope"}}}}}, 400, "M_BAD_JSON"},
			{"garbage next_batch", "?next_batch=garbage", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x"}}}, 400, "M_INVALID_PARAM"},
			{"next_batch of the other order", "?next_batch=czE6bjo1", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x"}}}, 400, "M_INVALID_PARAM"},
			{"unknown category is ignored", "", map[string]any{"search_categories": map[string]any{"people": map[string]any{}}}, 200, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do("POST", v3+"/search"+tc.query, tok, tc.body)
				s.expect(r, tc.status, tc.errcode)
			})
		}
		s.expect(s.do("POST", v3+"/search", "", map[string]any{}), 401, "M_MISSING_TOKEN")
	})
}
