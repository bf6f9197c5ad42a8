package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// fakeGateway is a push gateway on loopback (the rig allow-lists
// 127.0.0.0/8): it records every /notify it accepts and can answer 500,
// be closed (connection refused), or reject pushkeys.
type fakeGateway struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	mode     string          // "up" or "500"
	reject   map[string]bool // pushkeys answered with rejected
	accepted []map[string]any
	refused  int // requests answered 500
	rejected map[string]int
	bad      []string // protocol violations seen
}

func newFakeGateway(t *testing.T) *fakeGateway {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{t: t, addr: ln.Addr().String(), mode: "up", reject: map[string]bool{}, rejected: map[string]int{}}
	g.serve(ln)
	t.Cleanup(g.close)
	return g
}

func (g *fakeGateway) URL() string { return "http://" + g.addr + "/_matrix/push/v1/notify" }

func (g *fakeGateway) serve(ln net.Listener) {
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 5 * time.Second}
	g.mu.Lock()
	g.srv = srv
	g.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// close stops listening: the server's connections are refused.
func (g *fakeGateway) close() {
	g.mu.Lock()
	srv := g.srv
	g.mu.Unlock()
	_ = srv.Close()
}

// reopen listens again on the same address.
func (g *fakeGateway) reopen() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", g.addr); err == nil {
			g.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("reopen gateway on %s: %v", g.addr, err)
}

func (g *fakeGateway) setMode(m string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mode = m
}

func (g *fakeGateway) rejectKey(k string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reject[k] = true
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/_matrix/push/v1/notify" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		g.bad = append(g.bad, fmt.Sprintf("%s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type")))
		w.WriteHeader(http.StatusNotFound)
		return
	}
	var req struct {
		Notification map[string]any `json:"notification"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Notification == nil {
		g.bad = append(g.bad, "body: "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if g.mode == "500" {
		g.refused++
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	key := pushkeyOf(req.Notification)
	if g.reject[key] {
		g.rejected[key]++
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, fmt.Sprintf(`{"rejected":[%q]}`, key))
		return
	}
	g.accepted = append(g.accepted, req.Notification)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"rejected":[]}`)
}

func pushkeyOf(n map[string]any) string {
	devs, _ := n["devices"].([]any)
	if len(devs) != 1 {
		return ""
	}
	d, _ := devs[0].(map[string]any)
	k, _ := d["pushkey"].(string)
	return k
}

// received returns the notifications accepted for a pushkey, in arrival
// order.
func (g *fakeGateway) received(pushkey string) []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []map[string]any
	for _, n := range g.accepted {
		if pushkeyOf(n) == pushkey {
			out = append(out, n)
		}
	}
	return out
}

func (g *fakeGateway) eventIDs(pushkey string) []string {
	var out []string
	for _, n := range g.received(pushkey) {
		e, _ := n["event_id"].(string)
		out = append(out, e)
	}
	return out
}

func (g *fakeGateway) refusedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func setPusher(t *testing.T, u roomUser, body map[string]any) {
	t.Helper()
	if _, err := u.c.MakeRequest(context.Background(), http.MethodPost, u.c.BuildClientURL("v3", "pushers", "set"), body, nil); err != nil {
		t.Fatalf("/pushers/set: %v", err)
	}
}

func pushkeys(t *testing.T, u roomUser) []string {
	t.Helper()
	var resp struct {
		Pushers []struct {
			PushKey string `json:"pushkey"`
		} `json:"pushers"`
	}
	if _, err := u.c.MakeRequest(context.Background(), http.MethodGet, u.c.BuildClientURL("v3", "pushers"), nil, &resp); err != nil {
		t.Fatalf("GET /pushers: %v", err)
	}
	var out []string
	for _, p := range resp.Pushers {
		out = append(out, p.PushKey)
	}
	slices.Sort(out)
	return out
}

// jsonEqual compares a decoded value with the JSON want.
func jsonEqual(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	if !reflect.DeepEqual(got, w) {
		b, _ := json.Marshal(got)
		t.Fatalf("%s:\n got %s\nwant %s", what, b, want)
	}
}

// TestPushGateway: HTTP pushers registered through /pushers/set receive
// every notification from the durable queue exactly as the Push Gateway
// API shapes it (both formats); with the gateway failing and then closed,
// and the server stopped (SIGTERM) and killed (SIGKILL) in between, every
// notification arrives once the gateway is back, in order, none twice; a
// gateway that rejects a pushkey removes that pusher.
func TestPushGateway(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		gw := newFakeGateway(t)
		srv := testserver.Start(t, testserver.Options{Engine: engine, Set: map[string]any{
			// Fast retries so the test's bounded waits stay short.
			"push.initial_backoff": "100ms",
			"push.max_backoff":     "1s",
			"push.gateway_timeout": "3s",
		}})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		if err := alice.c.SetDisplayName(ctx, "Dr Alice"); err != nil {
			t.Fatal(err)
		}
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Surgery", RoomAliasName: "surgery"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}

		before := time.Now().Unix()
		setPusher(t, bob, map[string]any{"kind": "http", "app_id": "chat.myelin.test", "pushkey": "bob-full",
			"app_display_name": "Myelin", "device_display_name": "Bob's phone", "lang": "en",
			"data": map[string]any{"url": gw.URL(), "custom": "kept"}})
		setPusher(t, bob, map[string]any{"kind": "http", "app_id": "chat.myelin.test", "pushkey": "bob-idonly",
			"app_display_name": "Myelin", "device_display_name": "Bob's tablet", "lang": "en",
			"data": map[string]any{"url": gw.URL(), "format": "event_id_only"}})
		after := time.Now().Unix()
		if got := pushkeys(t, bob); !slices.Equal(got, []string{"bob-full", "bob-idonly"}) {
			t.Fatalf("pushers %v", got)
		}
		checkTS := func(n map[string]any) {
			t.Helper()
			d := n["devices"].([]any)[0].(map[string]any)
			ts, _ := d["pushkey_ts"].(float64)
			if int64(ts) < before-1 || int64(ts) > after+1 {
				t.Fatalf("pushkey_ts %v not within [%d, %d] (seconds)", d["pushkey_ts"], before, after)
			}
			delete(d, "pushkey_ts") // checked; the rest is compared whole
		}

		var all []string // every event that notified bob, in order
		step(t, "message in a one-to-one room", func(t *testing.T) {
			ev := sendText(t, alice, room.RoomID, "pushtest-body-1")
			all = append(all, string(ev))
			waitFor(t, "first notification at both pushers", 15*time.Second, func() bool {
				return len(gw.received("bob-full")) == 1 && len(gw.received("bob-idonly")) == 1
			})
			full, idOnly := gw.received("bob-full")[0], gw.received("bob-idonly")[0]
			checkTS(full)
			checkTS(idOnly)
			// Two members: .m.rule.room_one_to_one (a sound, so high priority).
			jsonEqual(t, "full format", full, fmt.Sprintf(`{"event_id":%q,"room_id":%q,"type":"m.room.message","sender":%q,
				"sender_display_name":"Dr Alice","room_name":"Surgery","room_alias":"#surgery:%s","prio":"high",
				"content":{"msgtype":"m.text","body":"pushtest-body-1"},"counts":{"unread":1},
				"devices":[{"app_id":"chat.myelin.test","pushkey":"bob-full","data":{"custom":"kept"},"tweaks":{"sound":"default"}}]}`,
				ev, room.RoomID, alice.UserID, testserver.ServerName))
			jsonEqual(t, "event_id_only format", idOnly, fmt.Sprintf(`{"event_id":%q,"room_id":%q,"prio":"high","counts":{"unread":1},
				"devices":[{"app_id":"chat.myelin.test","pushkey":"bob-idonly","data":{"format":"event_id_only"},"tweaks":{"sound":"default"}}]}`,
				ev, room.RoomID))
		})

		step(t, "invite names its target", func(t *testing.T) {
			rounds, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Rounds", Invite: []id.UserID{bob.UserID}})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "invite notification", 15*time.Second, func() bool {
				return len(gw.received("bob-full")) == 2 && len(gw.received("bob-idonly")) == 2
			})
			n := gw.received("bob-full")[1]
			all = append(all, n["event_id"].(string))
			checkTS(n)
			content, _ := n["content"].(map[string]any)
			if content["membership"] != "invite" {
				t.Fatalf("invite content %v", content)
			}
			delete(n, "content")
			jsonEqual(t, "invite", n, fmt.Sprintf(`{"event_id":%q,"room_id":%q,"type":"m.room.member","sender":%q,
				"sender_display_name":"Dr Alice","room_name":"Rounds","user_is_target":true,"prio":"high","counts":{"unread":2},
				"devices":[{"app_id":"chat.myelin.test","pushkey":"bob-full","data":{"custom":"kept"},"tweaks":{"sound":"default"}}]}`,
				all[1], rounds.RoomID, alice.UserID))
		})

		step(t, "gateway down, server restarted and killed, gateway back", func(t *testing.T) {
			gw.setMode("500")
			var backlog []string
			send := func(n int) {
				for range n {
					backlog = append(backlog, string(sendText(t, alice, room.RoomID, fmt.Sprintf("pushtest-body-%d", len(all)+len(backlog)+1))))
				}
			}
			send(2)
			waitFor(t, "retries against the failing gateway", 15*time.Second, func() bool { return gw.refusedCount() >= 4 })
			srv.Stop()
			gw.close()
			srv.Restart()
			send(2)
			time.Sleep(1500 * time.Millisecond) // attempts meet a closed port
			srv.Kill()
			srv.Restart()
			send(1)
			// Every notification is stored (the count is in bob's /sync)
			// before the gateway returns, so each delivery carries the
			// final unread count.
			waitUnread(t, bob, room.RoomID, mautrix.UnreadNotificationCounts{NotificationCount: len(all) - 1 + len(backlog)})
			gw.setMode("up")
			gw.reopen()
			all = append(all, backlog...)
			for _, key := range []string{"bob-full", "bob-idonly"} {
				waitFor(t, "every notification at "+key, 30*time.Second, func() bool { return len(gw.received(key)) >= len(all) })
			}
			time.Sleep(500 * time.Millisecond) // a duplicate would arrive now
			for _, key := range []string{"bob-full", "bob-idonly"} {
				if got := gw.eventIDs(key); !slices.Equal(got, all) {
					t.Fatalf("%s received %v, want each of %v once, in order", key, got, all)
				}
				for _, n := range gw.received(key)[2:] {
					if c, _ := n["counts"].(map[string]any); c["unread"] != float64(len(all)) {
						t.Fatalf("%s backlog counts %v, want unread %d", key, n["counts"], len(all))
					}
				}
			}
		})

		step(t, "a rejected pushkey removes its pusher", func(t *testing.T) {
			gw.rejectKey("bob-idonly")
			ev := sendText(t, alice, room.RoomID, "pushtest-body-rejected")
			all = append(all, string(ev))
			waitFor(t, "the rejected pusher removed", 15*time.Second, func() bool {
				return slices.Equal(pushkeys(t, bob), []string{"bob-full"})
			})
			waitFor(t, "the other pusher still served", 15*time.Second, func() bool { return len(gw.received("bob-full")) == len(all) })
			ev2 := sendText(t, alice, room.RoomID, "pushtest-body-after")
			all = append(all, string(ev2))
			waitFor(t, "the next notification", 15*time.Second, func() bool { return len(gw.received("bob-full")) == len(all) })
			gw.mu.Lock()
			rejected, bad := gw.rejected["bob-idonly"], gw.bad
			gw.mu.Unlock()
			if rejected != 1 {
				t.Fatalf("the rejected pushkey was sent %d requests, want 1", rejected)
			}
			if len(bad) > 0 {
				t.Fatalf("protocol violations: %v", bad)
			}
			if got := gw.eventIDs("bob-full"); !slices.Equal(got, all) {
				t.Fatalf("bob-full received %v, want %v", got, all)
			}
		})

		step(t, "metrics", func(t *testing.T) {
			var body string
			waitFor(t, "the queue gauge at 0", 5*time.Second, func() bool {
				body = string(srv.Do(t, http.MethodGet, "/metrics", "", nil).Body)
				return strings.Contains(body, "myelin_push_queue_pending 0")
			})
			for _, want := range []string{`myelin_push_deliveries_total{outcome="rejected"} 1`, `myelin_push_deliveries_total{outcome="sent"}`} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
		})

		if strings.Contains(srv.Logs(), "pushtest-body") {
			t.Error("the server logged a message body")
		}
	})
}
