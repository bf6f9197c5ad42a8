package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"myelin/internal/apierr"
	"myelin/internal/pgtest"
	"myelin/storage"
	"myelin/storage/postgres"
	"myelin/storage/sqlite"
)

// Workers, the writer and the pruner must all be gone after Close.
func TestMain(m *testing.M) { os.Exit(pgtest.MainNoLeaks(m)) }

const testServer = "clinic.test"

var testKey = ed25519.NewKeyFromSeed(make([]byte, 32))

// engine opens a fresh migrated database; reopen reopens the same one.
type engine struct {
	name   string
	open   func(t testing.TB) *storage.DB
	reopen func(t testing.TB) *storage.DB
}

func engines(t testing.TB) []engine {
	return []engine{sqliteEngine(t), postgresEngine()}
}

func sqliteEngine(t testing.TB) engine {
	path := filepath.Join(t.TempDir(), "rooms.db")
	open := func(t testing.TB) *storage.DB {
		db, err := sqlite.Open(path, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return db
	}
	return engine{name: "sqlite", open: open, reopen: open}
}

func postgresEngine() engine {
	var dsn string
	open := func(t testing.TB) *storage.DB {
		if dsn == "" {
			dsn = pgtest.DSN(t)
		}
		db, err := postgres.Open(dsn, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return db
	}
	return engine{name: "postgres", open: open, reopen: open}
}

// eachEngine runs fn with a fresh service on SQLite and on PostgreSQL.
func eachEngine(t *testing.T, fn func(t *testing.T, s *Service)) {
	t.Helper()
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			db := e.open(t)
			s := newService(t, db)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close service: %v", err)
				}
				db.Close()
			})
			fn(t, s)
		})
	}
}

func newService(t testing.TB, db *storage.DB) *Service {
	t.Helper()
	s, err := New(db, Config{ServerName: testServer, KeyID: "ed25519:test", SigningKey: testKey, IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
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

func mustCreate(t testing.TB, s *Service, req CreateRoomRequest) string {
	t.Helper()
	id, err := s.CreateRoom(ctxT(t), req)
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	return id
}

func mustSend(t testing.TB, s *Service, req SendRequest) string {
	t.Helper()
	id, err := s.Send(ctxT(t), req)
	if err != nil {
		t.Fatalf("send %s: %v", req.Type, err)
	}
	return id
}

func message(room, sender, body string) SendRequest {
	return SendRequest{RoomID: room, Sender: sender, Type: "m.room.message", Content: raw(map[string]any{"msgtype": "m.text", "body": body})}
}

// wantCode asserts err is an *apierr.Error with the errcode (and status).
func wantCode(t testing.TB, err error, code string, status int) {
	t.Helper()
	e, ok := apierr.As(err)
	if !ok {
		t.Fatalf("error = %v, want %s", err, code)
	}
	if e.Code != code || e.Status != status {
		t.Fatalf("error = %s/%d (%s), want %s/%d", e.Code, e.Status, e.Msg, code, status)
	}
}

func stateContent(t testing.TB, s *Service, room, typ, key string) map[string]any {
	t.Helper()
	r, err := s.Room(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := r.StateEvent(ctxT(t), typ, key)
	if err != nil {
		t.Fatalf("state %s/%s: %v", typ, key, err)
	}
	var c map[string]any
	if err := json.Unmarshal(ev.Content, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
