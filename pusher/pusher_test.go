package pusher

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"myelin/config"
	"myelin/internal/outbound"
	"myelin/roomserver"
	"myelin/storage"
	"myelin/storage/sqlite"
)

// gateway answers /notify with a scripted sequence of statuses (the last
// repeats) and records when each request came.
type gateway struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	hits    []time.Time
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hits = append(g.hits, time.Now())
	a := g.answers[min(len(g.hits), len(g.answers))-1]
	a(w)
}

func (g *gateway) hitTimes() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Time(nil), g.hits...)
}

func status(code int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func retryAfterOne(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusTooManyRequests)
}

// TestDeliveryOutcomes drives the real service against a scripted gateway:
// what is retried, what is dropped, what removes the pusher, and that a
// refused address is never contacted.
func TestDeliveryOutcomes(t *testing.T) {
	ok := status(200, `{"rejected":[]}`)
	tests := []struct {
		name        string
		url         string // "" = the gateway's
		answers     []func(w http.ResponseWriter)
		age         time.Duration // queued this long ago
		wantHits    int
		wantPusher  bool // still registered afterwards
		minInterval time.Duration
	}{
		{"delivered", "", []func(http.ResponseWriter){ok}, 0, 1, true, 0},
		{"5xx retried until delivered", "", []func(http.ResponseWriter){status(500, ""), status(503, ""), ok}, 0, 3, true, 0},
		{"408 retried", "", []func(http.ResponseWriter){status(408, ""), ok}, 0, 2, true, 0},
		{"429 waits for Retry-After", "", []func(http.ResponseWriter){retryAfterOne, ok}, 0, 2, true, 900 * time.Millisecond},
		{"400 dropped, not retried", "", []func(http.ResponseWriter){status(400, `{"errcode":"M_BAD_JSON"}`)}, 0, 1, true, 0},
		{"404 dropped, not retried", "", []func(http.ResponseWriter){status(404, "")}, 0, 1, true, 0},
		{"given up after max attempts", "", []func(http.ResponseWriter){status(500, "")}, 0, 3, true, 0},
		{"rejected pushkey removes the pusher", "", []func(http.ResponseWriter){status(200, `{"rejected":["key"]}`)}, 0, 1, false, 0},
		{"another pushkey's rejection is not ours", "", []func(http.ResponseWriter){status(200, `{"rejected":["other"]}`)}, 0, 1, true, 0},
		{"unreadable success is a success", "", []func(http.ResponseWriter){status(200, `not json`)}, 0, 1, true, 0},
		{"expired before delivery", "", []func(http.ResponseWriter){ok}, 2 * time.Hour, 0, true, 0},
		{"private address never contacted", "http://10.0.0.1/_matrix/push/v1/notify", nil, 0, 0, true, 0},
		{"metadata address never contacted", "http://169.254.169.254/_matrix/push/v1/notify", nil, 0, 0, true, 0},
		{"wrong path dropped", "gateway:/wrong/path", nil, 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := &gateway{answers: tt.answers}
			if gw.answers == nil {
				gw.answers = []func(http.ResponseWriter){ok}
			}
			srv := httptest.NewServer(gw)
			defer srv.Close()
			url := srv.URL + notifyPath
			switch {
			case tt.url == "gateway:/wrong/path":
				url = srv.URL + "/wrong/path"
			case tt.url != "":
				url = tt.url
			}
			e := newEnv(t)
			k := e.queue(url, tt.age)
			e.start(config.Push{GatewayTimeout: 2 * time.Second, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 2 * time.Second,
				MaxAttempts: 3, MaxAge: time.Hour})
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := e.q.Next(context.Background(), k); errors.Is(err, storage.ErrNotFound) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the delivery is still queued")
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // anything more would arrive now
			hits := gw.hitTimes()
			if len(hits) != tt.wantHits {
				t.Fatalf("gateway hit %d times, want %d", len(hits), tt.wantHits)
			}
			if tt.minInterval > 0 && hits[1].Sub(hits[0]) < tt.minInterval {
				t.Fatalf("retried after %v, want at least %v", hits[1].Sub(hits[0]), tt.minInterval)
			}
			ps, err := storage.NewPush(e.db).Pushers(context.Background(), k.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if (len(ps) == 1) != tt.wantPusher {
				t.Fatalf("pushers afterwards: %+v, want present %v", ps, tt.wantPusher)
			}
		})
	}
}

type env struct {
	t     *testing.T
	db    *storage.DB
	rooms *roomserver.Service
	q     *storage.PushQueue
}

const hs = "pusher.test"

func newEnv(t *testing.T) *env {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	rooms, err := roomserver.New(db, roomserver.Config{ServerName: hs, KeyID: "ed25519:test", SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rooms.Close() })
	return &env{t: t, db: db, rooms: rooms, q: storage.NewPushQueue(db)}
}

// queue sends a message to bob and queues its notification for bob's
// pusher at url, as the notifications consumer would.
func (e *env) queue(url string, age time.Duration) storage.PusherKey {
	t, ctx := e.t, context.Background()
	alice, bob := "@alice:"+hs, "@bob:"+hs
	room, err := e.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	evID, err := e.rooms.Send(ctx, roomserver.SendRequest{RoomID: room, Sender: alice, Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := storage.NewSync(e.db).EventByID(ctx, evID)
	if err != nil {
		t.Fatal(err)
	}
	push := storage.NewPush(e.db)
	data := fmt.Sprintf(`{"url":%q}`, url)
	if err := push.SetPusher(ctx, storage.Pusher{UserID: bob, AppID: "app", PushKey: "key", Kind: "http", Data: []byte(data), CreatedTS: 1}, true); err != nil {
		t.Fatal(err)
	}
	if err := push.StoreNotifications(ctx, "test", ev.NID, []storage.Notification{{UserID: bob, EventNID: ev.NID, RoomID: room, ThreadID: "main", Actions: []byte(`["notify"]`), TS: 1}}); err != nil {
		t.Fatal(err)
	}
	if age > 0 {
		if _, err := e.db.W.ExecContext(ctx, `UPDATE push_queue SET enqueued_ts = $1`, time.Now().Add(-age).UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	return storage.PusherKey{UserID: bob, AppID: "app", PushKey: "key"}
}

func (e *env) start(cfg config.Push) {
	allow, err := outbound.ParseNetworks([]string{"127.0.0.0/8"})
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := New(Options{DB: e.db, Events: e.rooms, Client: outbound.New(outbound.Options{Allow: allow}), Config: cfg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
}
