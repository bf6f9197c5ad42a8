package syncapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"myelin/internal/apierr"
	"myelin/internal/pgtest"
	"myelin/roomserver"
	"myelin/storage"
	"myelin/storage/postgres"
	"myelin/storage/sqlite"
)

// Typing and presence timers must all be gone after Close.
func TestMain(m *testing.M) { os.Exit(pgtest.MainNoLeaks(m)) }

const testServer = "clinic.test"

var testKey = ed25519.NewKeyFromSeed(make([]byte, 32))

// env is one database with a roomserver and a sync service on it.
type env struct {
	t     testing.TB
	db    *storage.DB
	rooms *roomserver.Service
	sync  *Service
	opts  Options
	open  func(t testing.TB) *storage.DB
}

type engine struct {
	name string
	open func(t testing.TB) *storage.DB // the same database each call
}

func engines(t testing.TB) []engine {
	path := filepath.Join(t.TempDir(), "sync.db")
	var dsn string
	return []engine{
		{"sqlite", func(t testing.TB) *storage.DB {
			db, err := sqlite.Open(path, 4)
			if err != nil {
				t.Fatal(err)
			}
			return migrated(t, db)
		}},
		{"postgres", func(t testing.TB) *storage.DB {
			if dsn == "" {
				dsn = pgtest.DSN(t)
			}
			db, err := postgres.Open(dsn, 8)
			if err != nil {
				t.Fatal(err)
			}
			return migrated(t, db)
		}},
	}
}

func migrated(t testing.TB, db *storage.DB) *storage.DB {
	t.Helper()
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// eachEngine runs fn on a fresh environment per engine. mutate adjusts the
// sync options.
func eachEngine(t *testing.T, mutate func(*Options), fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			e := &env{t: t, open: eng.open}
			if mutate != nil {
				mutate(&e.opts)
			}
			e.start(t)
			t.Cleanup(e.stop)
			fn(t, e)
		})
	}
}

func (e *env) start(t testing.TB) {
	t.Helper()
	e.t = t
	e.db = e.open(t)
	rs, err := roomserver.New(e.db, roomserver.Config{ServerName: testServer, KeyID: "ed25519:test", SigningKey: testKey,
		IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.rooms = rs
	opts := e.opts
	opts.DB, opts.Rooms = e.db, rs
	if e.sync, err = New(opts); err != nil {
		t.Fatal(err)
	}
}

func (e *env) stop() {
	if e.sync == nil {
		return
	}
	if err := e.sync.Close(); err != nil {
		e.t.Errorf("close sync: %v", err)
	}
	if err := e.rooms.Close(); err != nil {
		e.t.Errorf("close roomserver: %v", err)
	}
	e.db.Close()
	e.sync = nil
}

// restart stops every service and starts them again on the same database.
func (e *env) restart(t testing.TB) {
	e.stop()
	e.start(t)
}

func user(local string) string { return "@" + local + ":" + testServer }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func sp(s string) *string { return &s }

func (e *env) createRoom(req roomserver.CreateRoomRequest) string {
	e.t.Helper()
	id, err := e.rooms.CreateRoom(ctxT(e.t), req)
	if err != nil {
		e.t.Fatalf("create room: %v", err)
	}
	return id
}

// room creates a private room owned by creator, joined by the others.
func (e *env) room(creator string, name string, joiners ...string) string {
	e.t.Helper()
	req := roomserver.CreateRoomRequest{Creator: creator, Preset: roomserver.PresetPublicChat}
	if name != "" {
		req.Name = &name
	}
	id := e.createRoom(req)
	for _, j := range joiners {
		e.join(id, j)
	}
	return id
}

func (e *env) join(room, u string) {
	e.t.Helper()
	if _, err := e.rooms.Join(ctxT(e.t), roomserver.MembershipRequest{RoomID: room, Sender: u}); err != nil {
		e.t.Fatalf("join %s: %v", u, err)
	}
}

func (e *env) send(room, sender, body string) string {
	e.t.Helper()
	id, err := e.rooms.Send(ctxT(e.t), roomserver.SendRequest{RoomID: room, Sender: sender, Type: "m.room.message",
		Content: raw(map[string]any{"msgtype": "m.text", "body": body})})
	if err != nil {
		e.t.Fatalf("send: %v", err)
	}
	return id
}

func (e *env) state(room, sender, typ, key string, content any) string {
	e.t.Helper()
	id, err := e.rooms.Send(ctxT(e.t), roomserver.SendRequest{RoomID: room, Sender: sender, Type: typ, StateKey: &key, Content: raw(content)})
	if err != nil {
		e.t.Fatalf("send state %s: %v", typ, err)
	}
	return id
}

// syncResp is a decoded sync response, read the way a client reads it.
type syncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join   map[string]roomResp `json:"join"`
		Leave  map[string]roomResp `json:"leave"`
		Invite map[string]struct {
			InviteState struct {
				Events []testEvent `json:"events"`
			} `json:"invite_state"`
		} `json:"invite"`
		Knock map[string]struct {
			KnockState struct {
				Events []testEvent `json:"events"`
			} `json:"knock_state"`
		} `json:"knock"`
	} `json:"rooms"`
	Presence    batch `json:"presence"`
	AccountData batch `json:"account_data"`
	ToDevice    batch `json:"to_device"`
	DeviceLists struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	} `json:"device_lists"`
	OTKCount      map[string]int `json:"device_one_time_keys_count"`
	FallbackTypes []string       `json:"device_unused_fallback_key_types"`
}

type batch struct {
	Events []testEvent `json:"events"`
}

type roomResp struct {
	Summary *struct {
		Heroes  []string `json:"m.heroes"`
		Joined  *int     `json:"m.joined_member_count"`
		Invited *int     `json:"m.invited_member_count"`
	} `json:"summary"`
	State      *batch `json:"state"`
	StateAfter *batch `json:"state_after"`
	Timeline   struct {
		Events    []testEvent `json:"events"`
		Limited   bool        `json:"limited"`
		PrevBatch string      `json:"prev_batch"`
	} `json:"timeline"`
	Ephemeral   batch `json:"ephemeral"`
	AccountData batch `json:"account_data"`
	Unread      *struct {
		Highlight    *int64 `json:"highlight_count"`
		Notification *int64 `json:"notification_count"`
	} `json:"unread_notifications"`
}

type testEvent struct {
	EventID  string          `json:"event_id"`
	RoomID   string          `json:"room_id"`
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
	Sender   string          `json:"sender"`
	Content  json.RawMessage `json:"content"`
	Unsigned json.RawMessage `json:"unsigned"`
}

func (c testEvent) body() string {
	var b struct {
		Body string `json:"body"`
	}
	_ = json.Unmarshal(c.Content, &b)
	return b.Body
}

func bodies(evs []testEvent) []string {
	var out []string
	for _, e := range evs {
		if e.Type == "m.room.message" {
			out = append(out, e.body())
		}
	}
	return out
}

func types(evs []testEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// memberKeys lists the state keys of the member events in evs, sorted.
func memberKeys(evs []testEvent) []string {
	out := []string{}
	for _, e := range evs {
		if e.Type == "m.room.member" && e.StateKey != nil {
			out = append(out, *e.StateKey)
		}
	}
	slices.Sort(out)
	return out
}

func decode(t testing.TB, v any) syncResp {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var r syncResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// sync runs one sync and decodes it.
func (e *env) do(req Request) syncResp {
	e.t.Helper()
	if req.DeviceID == "" {
		req.DeviceID = "DEV"
	}
	resp, err := e.sync.Sync(ctxT(e.t), req)
	if err != nil {
		e.t.Fatalf("sync %+v: %v", req, err)
	}
	return decode(e.t, resp)
}

// wantErr asserts err is an *apierr.Error with the errcode and status.
func wantErr(t testing.TB, err error, code string, status int) {
	t.Helper()
	ae, ok := apierr.As(err)
	if !ok {
		t.Fatalf("error = %v, want %s", err, code)
	}
	if ae.Code != code || ae.Status != status {
		t.Fatalf("error = %s/%d (%s), want %s/%d", ae.Code, ae.Status, ae.Msg, code, status)
	}
}

func roomserverSend(room, sender string, content any) roomserver.SendRequest {
	return roomserver.SendRequest{RoomID: room, Sender: sender, Type: "m.room.message", Content: raw(content)}
}

func roomserverLeave(room, u string) roomserver.MembershipRequest {
	return roomserver.MembershipRequest{RoomID: room, Sender: u}
}
