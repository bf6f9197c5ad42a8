package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHS is just enough of a homeserver for the tool: register (UIA dummy
// and shared secret), createRoom, join, send (idempotent per txnId),
// /sync (initial and long-poll, inline timeline-limit filter) and
// /messages (dir=b). Membership is enforced, so a scenario that forgets a
// join fails here as it would on a real server.
type fakeHS struct {
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]string // access token → user ID
	names    map[string]bool
	sessions map[string]bool
	nonces   map[string]bool
	rooms    map[string]*fakeRoom
	events   []fakeEvent   // the stream; an event's position is its index + 1
	wake     chan struct{} // closed and replaced on every new event
	txns     map[string]string
	calls    map[string]int // by route
	seq      int            // for session and nonce names, which get deleted

	// Knobs, set before the first request.
	secret         string        // shared-secret registration
	rateLimitSends int           // answer this many sends with 429 first
	failSends      int           // then fail this many with 500
	sendDelay      time.Duration // before each send is stored
	noRooms        bool          // only the account endpoints exist (like Myelin before rooms)
}

type fakeRoom struct {
	members map[string]bool
	events  []int // positions
}

type fakeEvent struct {
	ID, Room, Sender, Type string
	Content                json.RawMessage
}

func newFakeHS(t testing.TB, configure func(*fakeHS)) *fakeHS {
	h := &fakeHS{
		tokens: map[string]string{}, names: map[string]bool{}, sessions: map[string]bool{},
		nonces: map[string]bool{}, rooms: map[string]*fakeRoom{}, txns: map[string]string{},
		calls: map[string]int{}, wake: make(chan struct{}),
	}
	if configure != nil {
		configure(h)
	}
	mux := http.NewServeMux()
	route := func(pattern string, fn func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h.mu.Lock()
			h.calls[pattern]++
			h.mu.Unlock()
			fn(w, r)
		})
	}
	route("POST /_matrix/client/v3/register", h.register)
	route("GET /_synapse/admin/v1/register", h.nonce)
	route("POST /_synapse/admin/v1/register", h.sharedSecretRegister)
	if !h.noRooms {
		route("POST /_matrix/client/v3/createRoom", h.createRoom)
		route("POST /_matrix/client/v3/join/{room}", h.join)
		route("PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}", h.send)
		route("GET /_matrix/client/v3/sync", h.sync)
		route("GET /_matrix/client/v3/rooms/{room}/messages", h.messages)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeErr(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHS) called(pattern string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[pattern]
}

func (h *fakeHS) countEvents(typ string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errcode": code, "error": msg})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "M_NOT_JSON", "bad JSON")
		return false
	}
	return true
}

// authed returns the caller's user ID, or answers 401. Callers hold no lock.
func (h *fakeHS) authed(w http.ResponseWriter, r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	h.mu.Lock()
	uid := h.tokens[token]
	h.mu.Unlock()
	if !ok || uid == "" {
		writeErr(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown token")
		return "", false
	}
	return uid, true
}

// newAccount creates the account under h.mu.
func (h *fakeHS) newAccount(name string) (map[string]string, bool) {
	if h.names[name] {
		return nil, false
	}
	h.names[name] = true
	uid := "@" + name + ":fake"
	token := fmt.Sprintf("tok%d", len(h.tokens)+1)
	h.tokens[token] = uid
	return map[string]string{"user_id": uid, "access_token": token, "device_id": "DEV"}, true
}

func (h *fakeHS) register(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Username, Password string
		Auth               *struct{ Type, Session string }
	}
	if !decodeBody(w, r, &b) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.Auth == nil {
		h.seq++
		session := fmt.Sprintf("s%d", h.seq)
		h.sessions[session] = true
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"session": session, "flows": []map[string]any{{"stages": []string{"m.login.dummy"}}}, "params": map[string]any{},
		})
		return
	}
	if b.Auth.Type != "m.login.dummy" || !h.sessions[b.Auth.Session] {
		writeErr(w, http.StatusUnauthorized, "M_FORBIDDEN", "bad auth")
		return
	}
	delete(h.sessions, b.Auth.Session)
	if b.Password == "" {
		writeErr(w, http.StatusBadRequest, "M_MISSING_PARAM", "password")
		return
	}
	out, ok := h.newAccount(b.Username)
	if !ok {
		writeErr(w, http.StatusBadRequest, "M_USER_IN_USE", "taken")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *fakeHS) nonce(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	n := fmt.Sprintf("n%d", h.seq)
	h.nonces[n] = true
	writeJSON(w, http.StatusOK, map[string]string{"nonce": n})
}

func (h *fakeHS) sharedSecretRegister(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Nonce, Username, Password, MAC string
		Admin                          bool
	}
	if !decodeBody(w, r, &b) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.nonces[b.Nonce] {
		writeErr(w, http.StatusBadRequest, "M_UNKNOWN", "Unrecognised nonce")
		return
	}
	delete(h.nonces, b.Nonce)
	m := hmac.New(sha1.New, []byte(h.secret))
	m.Write([]byte(b.Nonce + "\x00" + b.Username + "\x00" + b.Password + "\x00notadmin"))
	if got, err := hex.DecodeString(b.MAC); err != nil || !hmac.Equal(got, m.Sum(nil)) || b.Admin {
		writeErr(w, http.StatusForbidden, "M_FORBIDDEN", "HMAC incorrect")
		return
	}
	out, ok := h.newAccount(b.Username)
	if !ok {
		writeErr(w, http.StatusBadRequest, "M_USER_IN_USE", "taken")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// appendEvent stores an event under h.mu and wakes the long polls.
func (h *fakeHS) appendEvent(room, sender, typ string, content any) string {
	raw, _ := json.Marshal(content)
	id := fmt.Sprintf("$e%d", len(h.events)+1)
	h.events = append(h.events, fakeEvent{ID: id, Room: room, Sender: sender, Type: typ, Content: raw})
	h.rooms[room].events = append(h.rooms[room].events, len(h.events))
	close(h.wake)
	h.wake = make(chan struct{})
	return id
}

func (h *fakeHS) createRoom(w http.ResponseWriter, r *http.Request) {
	uid, ok := h.authed(w, r)
	if !ok {
		return
	}
	var b map[string]any
	if !decodeBody(w, r, &b) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	id := fmt.Sprintf("!r%d:fake", len(h.rooms)+1)
	h.rooms[id] = &fakeRoom{members: map[string]bool{uid: true}}
	h.appendEvent(id, uid, "m.room.create", map[string]any{})
	h.appendEvent(id, uid, "m.room.member", map[string]any{"membership": "join"})
	writeJSON(w, http.StatusOK, map[string]string{"room_id": id})
}

func (h *fakeHS) join(w http.ResponseWriter, r *http.Request) {
	uid, ok := h.authed(w, r)
	if !ok {
		return
	}
	id := r.PathValue("room")
	h.mu.Lock()
	defer h.mu.Unlock()
	room := h.rooms[id]
	if room == nil {
		writeErr(w, http.StatusNotFound, "M_NOT_FOUND", "no room")
		return
	}
	if !room.members[uid] {
		room.members[uid] = true
		h.appendEvent(id, uid, "m.room.member", map[string]any{"membership": "join"})
	}
	writeJSON(w, http.StatusOK, map[string]string{"room_id": id})
}

func (h *fakeHS) send(w http.ResponseWriter, r *http.Request) {
	uid, ok := h.authed(w, r)
	if !ok {
		return
	}
	var content map[string]any
	if !decodeBody(w, r, &content) {
		return
	}
	h.mu.Lock()
	if h.rateLimitSends > 0 {
		h.rateLimitSends--
		h.mu.Unlock()
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 20})
		return
	}
	if h.failSends > 0 {
		h.failSends--
		h.mu.Unlock()
		writeErr(w, http.StatusInternalServerError, "M_UNKNOWN", "disk on fire")
		return
	}
	delay := h.sendDelay
	h.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	id := r.PathValue("room")
	room := h.rooms[id]
	if room == nil || !room.members[uid] {
		writeErr(w, http.StatusForbidden, "M_FORBIDDEN", "not in room")
		return
	}
	key := uid + "/" + r.PathValue("txn")
	if ev, dup := h.txns[key]; dup {
		writeJSON(w, http.StatusOK, map[string]string{"event_id": ev})
		return
	}
	ev := h.appendEvent(id, uid, r.PathValue("type"), content)
	h.txns[key] = ev
	writeJSON(w, http.StatusOK, map[string]string{"event_id": ev})
}

func (h *fakeHS) clientEvent(pos int) map[string]any {
	e := h.events[pos-1]
	return map[string]any{"event_id": e.ID, "type": e.Type, "sender": e.Sender, "content": e.Content, "room_id": e.Room}
}

func (h *fakeHS) sync(w http.ResponseWriter, r *http.Request) {
	uid, ok := h.authed(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := 10
	if f := q.Get("filter"); f != "" {
		var filter struct {
			Room struct {
				Timeline struct{ Limit int }
			}
		}
		if json.Unmarshal([]byte(f), &filter) != nil {
			writeErr(w, http.StatusBadRequest, "M_INVALID_PARAM", "filter")
			return
		}
		if filter.Room.Timeline.Limit > 0 {
			limit = filter.Room.Timeline.Limit
		}
	}
	since := 0
	if s := q.Get("since"); s != "" {
		var err error
		if since, err = strconv.Atoi(s); err != nil {
			writeErr(w, http.StatusBadRequest, "M_INVALID_PARAM", "since")
			return
		}
	}
	timeout, _ := strconv.Atoi(q.Get("timeout"))
	deadline := time.After(time.Duration(timeout) * time.Millisecond)
	for {
		h.mu.Lock()
		join := map[string]any{}
		for id, room := range h.rooms {
			if !room.members[uid] {
				continue
			}
			var fresh []int
			for _, p := range room.events {
				if p > since {
					fresh = append(fresh, p)
				}
			}
			if since > 0 && len(fresh) == 0 {
				continue
			}
			limited := len(fresh) > limit
			if limited {
				fresh = fresh[len(fresh)-limit:]
			}
			evs := []map[string]any{}
			for _, p := range fresh {
				evs = append(evs, h.clientEvent(p))
			}
			join[id] = map[string]any{"timeline": map[string]any{"events": evs, "limited": limited}}
		}
		next, wake := len(h.events), h.wake
		h.mu.Unlock()
		if len(join) > 0 || since == 0 || timeout == 0 {
			writeJSON(w, http.StatusOK, map[string]any{"next_batch": strconv.Itoa(next), "rooms": map[string]any{"join": join}})
			return
		}
		select {
		case <-wake:
		case <-deadline:
			writeJSON(w, http.StatusOK, map[string]any{"next_batch": strconv.Itoa(next), "rooms": map[string]any{"join": join}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (h *fakeHS) messages(w http.ResponseWriter, r *http.Request) {
	uid, ok := h.authed(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if q.Get("dir") != "b" {
		writeErr(w, http.StatusBadRequest, "M_INVALID_PARAM", "only dir=b")
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 {
		writeErr(w, http.StatusBadRequest, "M_INVALID_PARAM", "limit")
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	room := h.rooms[r.PathValue("room")]
	if room == nil || !room.members[uid] {
		writeErr(w, http.StatusForbidden, "M_FORBIDDEN", "not in room")
		return
	}
	before := len(h.events) + 1
	if f := q.Get("from"); f != "" {
		if before, err = strconv.Atoi(strings.TrimPrefix(f, "p")); err != nil {
			writeErr(w, http.StatusBadRequest, "M_INVALID_PARAM", "from")
			return
		}
	}
	positions := slices.Clone(room.events)
	slices.Reverse(positions)
	chunk := []map[string]any{}
	last := 0
	for _, p := range positions {
		if p < before && len(chunk) < limit {
			chunk = append(chunk, h.clientEvent(p))
			last = p
		}
	}
	out := map[string]any{"chunk": chunk, "start": fmt.Sprintf("p%d", before)}
	if last > room.events[0] {
		out["end"] = fmt.Sprintf("p%d", last)
	}
	writeJSON(w, http.StatusOK, out)
}
