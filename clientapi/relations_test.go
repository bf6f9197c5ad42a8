package clientapi

import (
	"net/url"
	"slices"
	"testing"
)

const v1 = "/_matrix/client/v1"

func relPath(roomID, eventID, rest string) string {
	return v1 + "/rooms/" + url.PathEscape(roomID) + "/relations/" + url.PathEscape(eventID) + rest
}

// chunkIDs lists the event IDs of a response's chunk.
func chunkIDs(r resp) []string {
	out := []string{}
	chunk, _ := r.body["chunk"].([]any)
	for _, e := range chunk {
		id, _ := e.(map[string]any)["event_id"].(string)
		out = append(out, id)
	}
	return out
}

// threadOf returns unsigned."m.relations"."m.thread" of an event object.
func threadOf(ev any) map[string]any {
	m, _ := ev.(map[string]any)
	u, _ := m["unsigned"].(map[string]any)
	rels, _ := u["m.relations"].(map[string]any)
	th, _ := rels["m.thread"].(map[string]any)
	return th
}

func TestRelationsEndpoints(t *testing.T) {
	eachSyncEngine(t, nil, func(t *testing.T, s *syncServer) {
		alice, _ := s.user("alice")
		bob, _ := s.user("bob")
		carol, _ := s.user("carol")
		room := s.createRoom(alice, map[string]any{"preset": "public_chat"})
		s.expect(s.do("POST", roomPath(room, "/join"), bob, map[string]any{}), 200, "")
		txn := 0
		send := func(token, typ string, content map[string]any) string {
			txn++
			r := s.do("PUT", roomPath(room, "/send/"+typ+"/t"+string(rune('a'+txn))), token, content)
			s.expect(r, 200, "")
			return r.str("event_id")
		}
		rel := func(typ, target string) map[string]any { return map[string]any{"rel_type": typ, "event_id": target} }
		root := send(alice, "m.room.message", map[string]any{"body": "root"})
		r1 := send(bob, "m.room.message", map[string]any{"body": "r1", "m.relates_to": rel("m.thread", root)})
		r2 := send(bob, "m.room.message", map[string]any{"body": "r2", "m.relates_to": rel("m.thread", root)})
		react := send(alice, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": r1, "key": "👍"}})
		ref := send(alice, "m.room.message", map[string]any{"body": "ref", "m.relates_to": rel("m.reference", root)})
		other := send(alice, "m.room.message", map[string]any{"body": "root 2"})
		r3 := send(bob, "m.room.message", map[string]any{"body": "r3", "m.relates_to": rel("m.thread", other)})

		// A thread off a threaded event is refused.
		r := s.do("PUT", roomPath(room, "/send/m.room.message/nested"), bob,
			map[string]any{"body": "x", "m.relates_to": rel("m.thread", r1)})
		s.expect(r, 400, "M_UNKNOWN")

		for _, tc := range []struct {
			name      string
			path      string
			want      []string
			wantDepth any
		}{
			{"all children newest first", relPath(room, root, ""), []string{ref, r2, r1}, nil},
			{"by rel_type", relPath(room, root, "/m.thread"), []string{r2, r1}, nil},
			{"by rel_type and event type", relPath(room, root, "/m.thread/m.reaction"), []string{}, nil},
			{"forward", relPath(room, root, "/m.thread?dir=f"), []string{r1, r2}, nil},
			{"recurse", relPath(room, root, "?recurse=true"), []string{ref, react, r2, r1}, float64(3)},
			{"recurse false", relPath(room, root, "?recurse=false"), []string{ref, r2, r1}, float64(1)},
			{"annotations", relPath(room, r1, "/m.annotation/m.reaction"), []string{react}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do("GET", tc.path, bob, nil)
				s.expect(r, 200, "")
				if got := chunkIDs(r); !slices.Equal(got, tc.want) {
					t.Fatalf("chunk %v, want %v", got, tc.want)
				}
				if r.body["recursion_depth"] != tc.wantDepth {
					t.Fatalf("recursion_depth %v, want %v", r.body["recursion_depth"], tc.wantDepth)
				}
			})
		}

		// Pagination: limit 1 walks the three children, then stops.
		var got []string
		path := relPath(room, root, "?limit=1")
		for i := 0; i < 5; i++ {
			r := s.do("GET", path, bob, nil)
			s.expect(r, 200, "")
			got = append(got, chunkIDs(r)...)
			next := r.str("next_batch")
			if next == "" {
				break
			}
			path = relPath(room, root, "?limit=1&from="+url.QueryEscape(next))
		}
		if !slices.Equal(got, []string{ref, r2, r1}) {
			t.Fatalf("paginated %v", got)
		}

		// /threads: by latest reply; the root carries its thread summary.
		r = s.do("GET", v1+"/rooms/"+url.PathEscape(room)+"/threads", alice, nil)
		s.expect(r, 200, "")
		if ids := chunkIDs(r); !slices.Equal(ids, []string{other, root}) {
			t.Fatalf("threads %v, want [%s %s]", ids, other, root)
		}
		th := threadOf(r.body["chunk"].([]any)[1])
		if th == nil || th["count"] != float64(2) || th["current_user_participated"] != true {
			t.Fatalf("root's thread summary: %v", th)
		}
		if latest, _ := th["latest_event"].(map[string]any); latest["event_id"] != r2 {
			t.Fatalf("latest_event %v, want %s", th["latest_event"], r2)
		}
		r = s.do("GET", v1+"/rooms/"+url.PathEscape(room)+"/threads?limit=1", alice, nil)
		s.expect(r, 200, "")
		next := r.str("next_batch")
		if ids := chunkIDs(r); !slices.Equal(ids, []string{other}) || next == "" {
			t.Fatalf("threads page 1: %v next %q", ids, next)
		}
		r = s.do("GET", v1+"/rooms/"+url.PathEscape(room)+"/threads?limit=1&from="+url.QueryEscape(next), alice, nil)
		s.expect(r, 200, "")
		if ids := chunkIDs(r); !slices.Equal(ids, []string{root}) || r.str("next_batch") != "" {
			t.Fatalf("threads page 2: %v next %q", ids, r.str("next_batch"))
		}
		// Alice started the first thread only; both threads have bob's replies.
		r = s.do("GET", v1+"/rooms/"+url.PathEscape(room)+"/threads?include=participated", alice, nil)
		s.expect(r, 200, "")
		if ids := chunkIDs(r); !slices.Equal(ids, []string{other, root}) {
			t.Fatalf("alice participated in %v", ids)
		}
		s.expect(s.do("POST", roomPath(room, "/join"), carol, map[string]any{}), 200, "")
		r = s.do("GET", v1+"/rooms/"+url.PathEscape(room)+"/threads?include=participated", carol, nil)
		s.expect(r, 200, "")
		if ids := chunkIDs(r); len(ids) != 0 {
			t.Fatalf("carol participated in %v", ids)
		}
		_ = r3

		// /messages bundles the thread summary on the root.
		r = s.do("GET", roomPath(room, "/messages?dir=b&limit=50"), alice, nil)
		s.expect(r, 200, "")
		found := false
		for _, ev := range r.body["chunk"].([]any) {
			if ev.(map[string]any)["event_id"] == root {
				found = threadOf(ev)["count"] == float64(2)
			}
		}
		if !found {
			t.Fatalf("/messages did not bundle the root's thread: %s", r.raw)
		}
	})
}

func TestRelationsEndpointsBadInput(t *testing.T) {
	eachSyncEngine(t, nil, func(t *testing.T, s *syncServer) {
		alice, _ := s.user("alice")
		outsider, _ := s.user("outsider")
		room := s.createRoom(alice, map[string]any{"preset": "private_chat"})
		root := s.send(alice, room, "root")
		threads := v1 + "/rooms/" + url.PathEscape(room) + "/threads"
		for _, tc := range []struct {
			name, token, path string
			status            int
			code              string
		}{
			{"bad dir", alice, relPath(room, root, "?dir=x"), 400, "M_INVALID_PARAM"},
			{"bad limit", alice, relPath(room, root, "?limit=abc"), 400, "M_INVALID_PARAM"},
			{"negative limit", alice, relPath(room, root, "?limit=-1"), 400, "M_INVALID_PARAM"},
			{"bad recurse", alice, relPath(room, root, "?recurse=maybe"), 400, "M_INVALID_PARAM"},
			{"bad from", alice, relPath(room, root, "?from=garbage"), 400, "M_INVALID_PARAM"},
			{"bad to", alice, relPath(room, root, "?to=t-4"), 400, "M_INVALID_PARAM"},
			{"bad event ID", alice, relPath(room, "nope", ""), 400, "M_INVALID_PARAM"},
			{"unknown event", alice, relPath(room, "$unknown", ""), 404, "M_NOT_FOUND"},
			{"unknown room", alice, relPath("!nowhere", root, ""), 404, "M_NOT_FOUND"},
			{"event of a room the caller cannot read", outsider, relPath(room, root, ""), 404, "M_NOT_FOUND"},
			{"no token", "", relPath(room, root, ""), 401, "M_MISSING_TOKEN"},
			{"threads: bad include", alice, threads + "?include=mine", 400, "M_INVALID_PARAM"},
			{"threads: zero limit", alice, threads + "?limit=0", 400, "M_INVALID_PARAM"},
			{"threads: bad from", alice, threads + "?from=x", 400, "M_INVALID_PARAM"},
			{"threads: outsider", outsider, threads, 403, "M_FORBIDDEN"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s.expect(s.do("GET", tc.path, tc.token, nil), tc.status, tc.code)
			})
		}
	})
}
