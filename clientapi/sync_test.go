package clientapi

import (
	"crypto/ed25519"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"myelin/config"
	"myelin/roomserver"
	"myelin/syncapi"
)

// syncServer is a handler under test with the roomserver and the sync
// API wired in.
type syncServer struct {
	*roomServer
	sync *syncapi.Service
}

func eachSyncEngine(t *testing.T, mutate func(*config.Config), fn func(t *testing.T, s *syncServer)) {
	t.Helper()
	eachEngine(t, mutate, func(t *testing.T, s *server) {
		rs, err := roomserver.New(s.db, roomserver.Config{
			ServerName: s.cfg.ServerName, KeyID: "ed25519:test",
			SigningKey: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)),
		})
		if err != nil {
			t.Fatal(err)
		}
		sy, err := syncapi.New(syncapi.Options{DB: s.db, Rooms: rs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := sy.Close(); err != nil {
				t.Errorf("close sync: %v", err)
			}
			if err := rs.Close(); err != nil {
				t.Errorf("close roomserver: %v", err)
			}
		})
		h, err := New(Options{Config: s.cfg, Accounts: s.svc, Rooms: rs, Sync: sy})
		if err != nil {
			t.Fatal(err)
		}
		s.h = h
		fn(t, &syncServer{roomServer: &roomServer{server: s, rooms: rs}, sync: sy})
	})
}

func (s *syncServer) send(token, roomID, body string) string {
	s.t.Helper()
	r := s.do("PUT", roomPath(roomID, "/send/m.room.message/"+esc(body)), token, map[string]any{"msgtype": "m.text", "body": body})
	s.expect(r, 200, "")
	return r.str("event_id")
}

// userPath is /_matrix/client/v3/user/{userId} + rest, escaped.
func userPath(userID, rest string) string { return v3 + "/user/" + url.PathEscape(userID) + rest }

func TestSyncEndpointsFlow(t *testing.T) {
	eachSyncEngine(t, nil, func(t *testing.T, s *syncServer) {
		aliceTok, alice := s.user("alice")
		bobTok, bob := s.user("bob")
		room := s.createRoom(aliceTok, map[string]any{"preset": "public_chat", "name": "Wards"})
		s.expect(s.do("POST", roomPath(room, "/join"), bobTok, map[string]any{}), 200, "")
		first := s.send(aliceTok, room, "hello")
		second := s.send(aliceTok, room, "rounds at nine")

		// Filters: upload, read back, use by ID.
		r := s.do("POST", userPath(bob, "/filter"), bobTok, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 1}}})
		s.expect(r, 200, "")
		fid := r.str("filter_id")
		if fid == "" || strings.HasPrefix(fid, "{") {
			t.Fatalf("filter_id %q", fid)
		}
		r = s.do("GET", userPath(bob, "/filter/"+fid), bobTok, nil)
		s.expect(r, 200, "")
		if !strings.Contains(r.raw, `"limit":1`) {
			t.Fatalf("filter read back: %s", r.raw)
		}
		r = s.do("GET", v3+"/sync?filter="+fid, bobTok, nil)
		s.expect(r, 200, "")
		var sync struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Timeline struct {
						Events  []map[string]any `json:"events"`
						Limited bool             `json:"limited"`
					} `json:"timeline"`
				} `json:"join"`
			} `json:"rooms"`
		}
		if err := json.Unmarshal([]byte(r.raw), &sync); err != nil {
			t.Fatal(err)
		}
		tl := sync.Rooms.Join[room].Timeline
		if len(tl.Events) != 1 || tl.Events[0]["event_id"] != second || !tl.Limited {
			t.Fatalf("filtered sync timeline: %+v", tl)
		}
		// Inline filter and the other parameters.
		r = s.do("GET", v3+"/sync?since="+url.QueryEscape(sync.NextBatch)+"&timeout=0&full_state=false&set_presence=offline&filter="+
			url.QueryEscape(`{"room":{"timeline":{"limit":5}}}`), bobTok, nil)
		s.expect(r, 200, "")

		// History.
		r = s.do("GET", roomPath(room, "/messages?dir=b&limit=2"), bobTok, nil)
		s.expect(r, 200, "")
		if chunk := r.body["chunk"].([]any); len(chunk) != 2 || chunk[0].(map[string]any)["event_id"] != second {
			t.Fatalf("messages: %s", r.raw)
		}
		r = s.do("GET", roomPath(room, "/context/"+esc(first)+"?limit=2"), bobTok, nil)
		s.expect(r, 200, "")
		if r.body["event"].(map[string]any)["event_id"] != first || r.str("start") == "" || r.str("end") == "" {
			t.Fatalf("context: %s", r.raw)
		}
		r = s.do("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/timestamp_to_event?ts=9999999999999&dir=b", bobTok, nil)
		s.expect(r, 200, "")
		if r.str("event_id") != second {
			t.Fatalf("timestamp_to_event: %s", r.raw)
		}

		// Receipts, read markers, typing, presence.
		s.expect(s.do("POST", roomPath(room, "/receipt/m.read/"+esc(second)), bobTok, map[string]any{}), 200, "")
		s.expect(s.do("POST", roomPath(room, "/receipt/m.read/"+esc(second)), bobTok, ""), 200, "")
		s.expect(s.do("POST", roomPath(room, "/receipt/m.read/"+esc(second)), bobTok, map[string]any{"thread_id": "main"}), 200, "")
		s.expect(s.do("POST", roomPath(room, "/read_markers"), bobTok, map[string]any{"m.fully_read": second, "m.read.private": second}), 200, "")
		s.expect(s.do("PUT", roomPath(room, "/typing/"+esc(bob)), bobTok, map[string]any{"typing": true, "timeout": 30000}), 200, "")
		s.expect(s.do("PUT", roomPath(room, "/typing/"+esc(bob)), bobTok, map[string]any{"typing": false}), 200, "")
		s.expect(s.do("PUT", v3+"/presence/"+esc(bob)+"/status", bobTok, map[string]any{"presence": "unavailable", "status_msg": "lunch"}), 200, "")
		r = s.do("GET", v3+"/presence/"+esc(bob)+"/status", aliceTok, nil)
		s.expect(r, 200, "")
		if r.str("presence") != "unavailable" || r.str("status_msg") != "lunch" {
			t.Fatalf("presence: %s", r.raw)
		}

		// Account data, global and per room; tags.
		s.expect(s.do("PUT", userPath(bob, "/account_data/m.direct"), bobTok, map[string]any{alice: []string{room}}), 200, "")
		r = s.do("GET", userPath(bob, "/account_data/m.direct"), bobTok, nil)
		s.expect(r, 200, "")
		if _, ok := r.body[alice]; !ok {
			t.Fatalf("m.direct: %s", r.raw)
		}
		s.expect(s.do("PUT", userPath(bob, "/rooms/"+esc(room)+"/account_data/chat.myelin.note"), bobTok, map[string]any{"n": 1}), 200, "")
		s.expect(s.do("GET", userPath(bob, "/rooms/"+esc(room)+"/account_data/chat.myelin.note"), bobTok, nil), 200, "")
		r = s.do("GET", userPath(bob, "/rooms/"+esc(room)+"/account_data/m.fully_read"), bobTok, nil)
		s.expect(r, 200, "")
		if r.str("event_id") != second {
			t.Fatalf("m.fully_read: %s", r.raw)
		}
		s.expect(s.do("PUT", userPath(bob, "/rooms/"+esc(room)+"/tags/m.favourite"), bobTok, map[string]any{"order": 0.5}), 200, "")
		s.expect(s.do("PUT", userPath(bob, "/rooms/"+esc(room)+"/tags/u.work"), bobTok, map[string]any{}), 200, "")
		s.expect(s.do("DELETE", userPath(bob, "/rooms/"+esc(room)+"/tags/u.work"), bobTok, nil), 200, "")
		r = s.do("GET", userPath(bob, "/rooms/"+esc(room)+"/tags"), bobTok, nil)
		s.expect(r, 200, "")
		if r.raw != `{"tags":{"m.favourite":{"order":0.5}}}` {
			t.Fatalf("tags: %s", r.raw)
		}

		// The incremental sync carries all of it.
		r = s.do("GET", v3+"/sync?since="+url.QueryEscape(sync.NextBatch), bobTok, nil)
		s.expect(r, 200, "")
		for _, want := range []string{`"m.direct"`, `"m.tag"`, `"m.fully_read"`, `"m.receipt"`, `"m.read.private"`, `"m.presence"`, `"lunch"`} {
			if !strings.Contains(r.raw, want) {
				t.Errorf("incremental sync lacks %s: %s", want, r.raw)
			}
		}
	})
}

// TestSyncEndpointsBadInput: each bad request gets the spec's status and
// errcode, and changes nothing.
func TestSyncEndpointsBadInput(t *testing.T) {
	eachSyncEngine(t, nil, func(t *testing.T, s *syncServer) {
		aliceTok, alice := s.user("alice")
		bobTok, bob := s.user("bob")
		room := s.createRoom(aliceTok, map[string]any{"preset": "public_chat"})
		ev := s.send(aliceTok, room, "x")
		ap := func(u, rest string) string { return userPath(u, rest) }
		cases := []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"sync without token", "GET", v3 + "/sync", "", nil, 401, "M_MISSING_TOKEN"},
			{"sync bad since", "GET", v3 + "/sync?since=xyz", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"sync bad timeout", "GET", v3 + "/sync?timeout=soon", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"sync negative timeout", "GET", v3 + "/sync?timeout=-5", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"sync bad full_state", "GET", v3 + "/sync?full_state=yes", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"sync bad set_presence", "GET", v3 + "/sync?set_presence=away", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"sync unknown filter", "GET", v3 + "/sync?filter=77", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"sync inline filter not JSON", "GET", v3 + "/sync?filter=" + url.QueryEscape("{x"), aliceTok, nil, 400, "M_NOT_JSON"},
			{"filter for another user", "POST", ap(bob, "/filter"), aliceTok, map[string]any{}, 403, "M_FORBIDDEN"},
			{"filter not JSON", "POST", ap(alice, "/filter"), aliceTok, "{x", 400, "M_NOT_JSON"},
			{"filter bad limit", "POST", ap(alice, "/filter"), aliceTok, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": -1}}}, 400, "M_BAD_JSON"},
			{"unknown filter", "GET", ap(alice, "/filter/12"), aliceTok, nil, 404, "M_NOT_FOUND"},
			{"another user's filter", "GET", ap(bob, "/filter/1"), aliceTok, nil, 403, "M_FORBIDDEN"},
			{"messages without dir", "GET", roomPath(room, "/messages"), aliceTok, nil, 400, "M_MISSING_PARAM"},
			{"messages bad dir", "GET", roomPath(room, "/messages?dir=up"), aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"messages bad limit", "GET", roomPath(room, "/messages?dir=b&limit=x"), aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"messages bad from", "GET", roomPath(room, "/messages?dir=b&from=zz"), aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"messages bad filter", "GET", roomPath(room, "/messages?dir=b&filter="+url.QueryEscape(`{"limit":-1}`)), aliceTok, nil, 400, "M_BAD_JSON"},
			{"messages non-member", "GET", roomPath(room, "/messages?dir=b"), bobTok, nil, 403, "M_FORBIDDEN"},
			{"messages bad room ID", "GET", roomPath("room", "/messages?dir=b"), aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"context unknown event", "GET", roomPath(room, "/context/"+esc("$nope")), aliceTok, nil, 404, "M_NOT_FOUND"},
			{"context bad event ID", "GET", roomPath(room, "/context/nope"), aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"context non-member", "GET", roomPath(room, "/context/"+esc(ev)), bobTok, nil, 403, "M_FORBIDDEN"},
			{"timestamp without ts", "GET", "/_matrix/client/v1/rooms/" + esc(room) + "/timestamp_to_event?dir=f", aliceTok, nil, 400, "M_MISSING_PARAM"},
			{"timestamp bad dir", "GET", "/_matrix/client/v1/rooms/" + esc(room) + "/timestamp_to_event?ts=1&dir=x", aliceTok, nil, 400, "M_INVALID_PARAM"},
			{"timestamp none", "GET", "/_matrix/client/v1/rooms/" + esc(room) + "/timestamp_to_event?ts=1&dir=b", aliceTok, nil, 404, "M_NOT_FOUND"},
			{"receipt bad type", "POST", roomPath(room, "/receipt/m.seen/"+esc(ev)), aliceTok, map[string]any{}, 400, "M_INVALID_PARAM"},
			{"receipt thread not string", "POST", roomPath(room, "/receipt/m.read/"+esc(ev)), aliceTok, map[string]any{"thread_id": 5}, 400, "M_INVALID_PARAM"},
			{"receipt empty thread", "POST", roomPath(room, "/receipt/m.read/"+esc(ev)), aliceTok, map[string]any{"thread_id": ""}, 400, "M_INVALID_PARAM"},
			{"receipt not JSON", "POST", roomPath(room, "/receipt/m.read/"+esc(ev)), aliceTok, "{x", 400, "M_NOT_JSON"},
			{"receipt non-member", "POST", roomPath(room, "/receipt/m.read/"+esc(ev)), bobTok, map[string]any{}, 403, "M_FORBIDDEN"},
			{"read_markers unknown event", "POST", roomPath(room, "/read_markers"), aliceTok, map[string]any{"m.fully_read": "$nope"}, 404, "M_NOT_FOUND"},
			{"read_markers wrong type", "POST", roomPath(room, "/read_markers"), aliceTok, map[string]any{"m.read": 5}, 400, "M_BAD_JSON"},
			{"typing for another user", "PUT", roomPath(room, "/typing/"+esc(bob)), aliceTok, map[string]any{"typing": true, "timeout": 1000}, 403, "M_FORBIDDEN"},
			{"typing without typing", "PUT", roomPath(room, "/typing/"+esc(alice)), aliceTok, map[string]any{"timeout": 1000}, 400, "M_BAD_JSON"},
			{"typing not joined", "PUT", roomPath(room, "/typing/"+esc(bob)), bobTok, map[string]any{"typing": true, "timeout": 1000}, 403, "M_FORBIDDEN"},
			{"presence for another user", "PUT", v3 + "/presence/" + esc(bob) + "/status", aliceTok, map[string]any{"presence": "online"}, 403, "M_FORBIDDEN"},
			{"presence bad state", "PUT", v3 + "/presence/" + esc(alice) + "/status", aliceTok, map[string]any{"presence": "away"}, 400, "M_INVALID_PARAM"},
			{"presence missing", "PUT", v3 + "/presence/" + esc(alice) + "/status", aliceTok, map[string]any{}, 400, "M_BAD_JSON"},
			{"presence of a stranger", "GET", v3 + "/presence/" + esc(bob) + "/status", aliceTok, nil, 403, "M_FORBIDDEN"},
			{"account data for another user", "PUT", ap(bob, "/account_data/x.y"), aliceTok, map[string]any{}, 403, "M_FORBIDDEN"},
			{"read another user's account data", "GET", ap(bob, "/account_data/x.y"), aliceTok, nil, 403, "M_FORBIDDEN"},
			{"account data not JSON", "PUT", ap(alice, "/account_data/x.y"), aliceTok, "nope", 400, "M_NOT_JSON"},
			{"account data not an object", "PUT", ap(alice, "/account_data/x.y"), aliceTok, []int{1}, 400, "M_BAD_JSON"},
			{"account data m.fully_read", "PUT", ap(alice, "/rooms/"+esc(room)+"/account_data/m.fully_read"), aliceTok, map[string]any{"event_id": ev}, 405, "M_BAD_JSON"},
			{"account data m.push_rules", "PUT", ap(alice, "/account_data/m.push_rules"), aliceTok, map[string]any{}, 405, "M_BAD_JSON"},
			{"account data bad room", "PUT", ap(alice, "/rooms/room/account_data/x.y"), aliceTok, map[string]any{}, 400, "M_INVALID_PARAM"},
			{"account data unset", "GET", ap(alice, "/account_data/never"), aliceTok, nil, 404, "M_NOT_FOUND"},
			{"tag for another user", "PUT", ap(bob, "/rooms/"+esc(room)+"/tags/u.x"), aliceTok, map[string]any{}, 403, "M_FORBIDDEN"},
			{"tag bad order", "PUT", ap(alice, "/rooms/"+esc(room)+"/tags/u.x"), aliceTok, map[string]any{"order": "first"}, 400, "M_BAD_JSON"},
			{"tag not an object", "PUT", ap(alice, "/rooms/"+esc(room)+"/tags/u.x"), aliceTok, "[]", 400, "M_BAD_JSON"},
			{"tag too long", "PUT", ap(alice, "/rooms/"+esc(room)+"/tags/"+strings.Repeat("t", 256)), aliceTok, map[string]any{}, 400, "M_INVALID_PARAM"},
			{"tags bad room", "GET", ap(alice, "/rooms/room/tags"), aliceTok, nil, 400, "M_INVALID_PARAM"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				s.t = t
				r := s.do(c.method, c.path, c.token, c.body)
				if r.status != c.status || r.str("errcode") != c.code {
					t.Fatalf("%s %s: %d %s, want %d %s (%s)", c.method, c.path, r.status, r.str("errcode"), c.status, c.code, r.raw)
				}
			})
		}
		// Nothing was stored by the refused writes.
		for _, path := range []string{ap(alice, "/account_data/x.y"), ap(alice, "/account_data/m.push_rules"),
			ap(alice, "/rooms/"+esc(room)+"/account_data/m.fully_read")} {
			if r := s.do("GET", path, aliceTok, nil); r.status != 404 {
				t.Errorf("refused write stored: GET %s = %d %s", path, r.status, r.raw)
			}
		}
		if r := s.do("GET", ap(alice, "/rooms/"+esc(room)+"/tags"), aliceTok, nil); r.raw != `{"tags":{}}` {
			t.Errorf("refused tags stored: %s", r.raw)
		}
		if r := s.do("GET", v3+"/presence/"+esc(alice)+"/status", aliceTok, nil); r.str("status_msg") != "" {
			t.Errorf("refused presence stored: %s", r.raw)
		}
		if r := s.do("GET", v3+"/sync", bobTok, nil); strings.Contains(r.raw, "m.typing") {
			t.Errorf("refused typing stored: %s", r.raw)
		}
	})
}
