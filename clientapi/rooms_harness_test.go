package clientapi

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"testing"

	"myelin/config"
	"myelin/roomserver"
)

// roomServer is a handler under test with a roomserver wired in.
type roomServer struct {
	*server
	rooms *roomserver.Service
}

// eachRoomEngine is eachEngine with the room endpoints served.
func eachRoomEngine(t *testing.T, mutate func(*config.Config), fn func(t *testing.T, s *roomServer)) {
	t.Helper()
	eachEngine(t, mutate, func(t *testing.T, s *server) {
		rs, err := roomserver.New(s.db, roomserver.Config{
			ServerName: s.cfg.ServerName, KeyID: "ed25519:test",
			SigningKey:         ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)),
			DefaultRoomVersion: s.cfg.Rooms.DefaultRoomVersion,
		})
		if err != nil {
			t.Fatal(err)
		}
		// Registered after the database's cleanup, so it runs before it.
		t.Cleanup(func() {
			if err := rs.Close(); err != nil {
				t.Errorf("close roomserver: %v", err)
			}
		})
		h, err := New(Options{Config: s.cfg, Accounts: s.svc, Rooms: rs})
		if err != nil {
			t.Fatal(err)
		}
		s.h = h
		fn(t, &roomServer{server: s, rooms: rs})
	})
}

// user registers an account and returns its access token and user ID.
func (s *roomServer) user(localpart string) (token, userID string) {
	s.t.Helper()
	r := s.register(localpart, "password "+localpart)
	return r.str("access_token"), r.str("user_id")
}

// createRoom creates a room and returns its ID.
func (s *roomServer) createRoom(token string, body map[string]any) string {
	s.t.Helper()
	r := s.do("POST", v3+"/createRoom", token, body)
	s.expect(r, 200, "")
	id := r.str("room_id")
	if id == "" {
		s.t.Fatalf("createRoom without room_id: %s", r.raw)
	}
	return id
}

// roomPath is /_matrix/client/v3/rooms/{roomId} + rest, escaped.
func roomPath(roomID, rest string) string {
	return v3 + "/rooms/" + url.PathEscape(roomID) + rest
}

// esc escapes one path segment.
func esc(s string) string { return url.PathEscape(s) }

// stateList is GET /rooms/{roomId}/state, whose answer is a JSON array.
func (s *roomServer) stateList(roomID, token string) []map[string]any {
	s.t.Helper()
	req := httptest.NewRequest("GET", roomPath(roomID, "/state"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		s.t.Fatalf("GET state: %d %s", rec.Code, rec.Body.String())
	}
	var out []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		s.t.Fatalf("GET state: not a JSON array: %s", rec.Body.String())
	}
	return out
}
