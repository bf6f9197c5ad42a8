package notifications_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"myelin/internal/pgtest"
	"myelin/notifications"
	"myelin/pushrules"
	"myelin/roomserver"
	"myelin/storage"
	"myelin/storage/postgres"
	"myelin/storage/sqlite"
	"myelin/syncapi"
)

// The consumer goroutine must be gone after Close.
func TestMain(m *testing.M) { os.Exit(pgtest.MainNoLeaks(m)) }

const server = "clinic.test"

func user(l string) string { return "@" + l + ":" + server }

var (
	alice, bob, carol = user("alice"), user("bob"), user("carol")
	key               = ed25519.NewKeyFromSeed(make([]byte, 32))
)

// env is the real stack on one database: roomserver, notifications, and
// the sync service reading counts through the UnreadCounter interface.
type env struct {
	t     *testing.T
	db    *storage.DB
	rooms *roomserver.Service
	n     *notifications.Service
	sync  *syncapi.Service
	open  func() *storage.DB
	// gather is the consumer's Options.Gather (0: the default).
	gather time.Duration
}

type counter struct{ *notifications.Service }

func (c counter) UnreadCounts(ctx context.Context, u string, rooms []string, threads bool) (map[string]syncapi.UnreadCounts, error) {
	in, err := c.Service.UnreadCounts(ctx, u, rooms, threads)
	out := map[string]syncapi.UnreadCounts{}
	for r, v := range in {
		sc := syncapi.UnreadCounts{Highlight: v.Highlight, Notification: v.Notification, Threads: map[string]syncapi.UnreadCounts{}}
		for t, tv := range v.Threads {
			sc.Threads[t] = syncapi.UnreadCounts{Highlight: tv.Highlight, Notification: tv.Notification}
		}
		out[r] = sc
	}
	return out, err
}

func (e *env) start() {
	t := e.t
	e.db = e.open()
	if err := e.db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	var err error
	e.rooms, err = roomserver.New(e.db, roomserver.Config{ServerName: server, KeyID: "ed25519:test", SigningKey: key, IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if e.n, err = notifications.New(notifications.Options{DB: e.db, Rooms: e.rooms, ServerName: server, BatchSize: 7, Gather: e.gather}); err != nil {
		t.Fatal(err)
	}
	if e.sync, err = syncapi.New(syncapi.Options{DB: e.db, Rooms: e.rooms, Unread: counter{e.n}}); err != nil {
		t.Fatal(err)
	}
	e.n.SetWake(e.sync.Wake)
	e.n.SetRulesPublisher(func(ctx context.Context, u string, c json.RawMessage) error {
		return e.sync.SetAccountData(ctx, u, "", "m.push_rules", c)
	})
}

func (e *env) stop() {
	if e.n == nil {
		return
	}
	_ = e.sync.Close()
	_ = e.n.Close()
	_ = e.rooms.Close()
	_ = e.db.Close()
	e.n = nil
}

// eachEngine runs fn on a fresh env per engine; configure, if any, sets
// the env's options before it starts.
func eachEngine(t *testing.T, fn func(t *testing.T, e *env), configure ...func(*env)) {
	path := filepath.Join(t.TempDir(), "n.db")
	var dsn string
	for _, eng := range []struct {
		name string
		open func(t *testing.T) func() *storage.DB
	}{
		{"sqlite", func(t *testing.T) func() *storage.DB {
			return func() *storage.DB {
				db, err := sqlite.Open(path, 4)
				if err != nil {
					t.Fatal(err)
				}
				return db
			}
		}},
		{"postgres", func(t *testing.T) func() *storage.DB {
			return func() *storage.DB {
				if dsn == "" {
					dsn = pgtest.DSN(t)
				}
				db, err := postgres.Open(dsn, 8)
				if err != nil {
					t.Fatal(err)
				}
				return db
			}
		}},
	} {
		t.Run(eng.name, func(t *testing.T) {
			e := &env{t: t, open: eng.open(t)}
			for _, c := range configure {
				c(e)
			}
			e.start()
			t.Cleanup(e.stop)
			fn(t, e)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) room(members ...string) string {
	e.t.Helper()
	id, err := e.rooms.CreateRoom(ctxT(e.t), roomserver.CreateRoomRequest{Creator: alice, Preset: roomserver.PresetPublicChat})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range members {
		if _, err := e.rooms.Join(ctxT(e.t), roomserver.MembershipRequest{RoomID: id, Sender: m}); err != nil {
			e.t.Fatal(err)
		}
	}
	return id
}

func (e *env) send(room, sender, typ string, content string) string {
	e.t.Helper()
	id, err := e.rooms.Send(ctxT(e.t), roomserver.SendRequest{RoomID: room, Sender: sender, Type: typ, Content: json.RawMessage(content)})
	if err != nil {
		e.t.Fatalf("send: %v", err)
	}
	return id
}

func (e *env) counts(u, room string) string {
	e.t.Helper()
	c, err := e.n.UnreadCounts(ctxT(e.t), u, []string{room}, true)
	if err != nil {
		e.t.Fatal(err)
	}
	s := fmt.Sprintf("%d/%d", c[room].Notification, c[room].Highlight)
	for th, tc := range c[room].Threads {
		s += fmt.Sprintf(" %s:%d/%d", th, tc.Notification, tc.Highlight)
	}
	return s
}

const encrypted = `{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgAEnAC","sender_key":"k","session_id":"s","device_id":"D"}`

// TestUnreadCounts is the acceptance table: each case is a fresh room;
// counts are "notifications/highlights" for bob and carol after the
// events, read the way /sync reads them.
func TestUnreadCounts(t *testing.T) {
	msg := func(body, extra string) string {
		return `{"msgtype":"m.text","body":"` + body + `"` + extra + `}`
	}
	type ev struct{ sender, typ, content string }
	tests := []struct {
		name       string
		dm         bool // alice and bob only; else alice, bob, carol
		events     []ev
		bob, carol string
	}{
		{"group message", false, []ev{{alice, "m.room.message", msg("hi", "")}}, "1/0", "1/0"},
		{"sender's own message counts for nobody else twice", false, []ev{{bob, "m.room.message", msg("hi", "")}}, "0/0", "1/0"},
		{"user mention highlights only the mentioned", false, []ev{{alice, "m.room.message", msg("bob?", `,"m.mentions":{"user_ids":["`+bob+`"]}`)}}, "1/1", "1/0"},
		{"display name in body is no longer a mention", false, []ev{{alice, "m.room.message", msg("bob: lunch", `,"m.mentions":{}`)}}, "1/0", "1/0"},
		{"room mention by the creator", false, []ev{{alice, "m.room.message", msg("@room", `,"m.mentions":{"room":true}`)}}, "1/1", "1/1"},
		{"room mention without power", false, []ev{{carol, "m.room.message", msg("@room", `,"m.mentions":{"room":true}`)}}, "1/0", "0/0"},
		{"DM message", true, []ev{{alice, "m.room.message", msg("hi", "")}, {alice, "m.room.message", msg("again", "")}}, "2/0", ""},
		{"encrypted DM", true, []ev{{alice, "m.room.encrypted", encrypted}}, "1/0", ""},
		{"encrypted group", false, []ev{{alice, "m.room.encrypted", encrypted}}, "1/0", "1/0"},
		{"notice", false, []ev{{alice, "m.room.message", `{"msgtype":"m.notice","body":"bot"}`}}, "0/0", "0/0"},
		{"reaction and edit", false, []ev{{alice, "m.reaction", `{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"+1"}}`},
			{alice, "m.room.message", msg("* fix", `,"m.new_content":{"msgtype":"m.text","body":"fix"},"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}`)}}, "0/0", "0/0"},
		{"thread reply counts in its thread", false, []ev{{alice, "m.room.message", msg("in thread", `,"m.relates_to":{"rel_type":"m.thread","event_id":"$root"}`)}}, "0/0 $root:1/0", "0/0 $root:1/0"},
	}
	eachEngine(t, func(t *testing.T, e *env) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e.t = t
				members := []string{bob, carol}
				if tc.dm {
					members = []string{bob}
				}
				room := e.room(members...)
				for _, x := range tc.events {
					e.send(room, x.sender, x.typ, x.content)
				}
				if got := e.counts(bob, room); got != tc.bob {
					t.Errorf("bob: %s, want %s", got, tc.bob)
				}
				if tc.carol != "" {
					if got := e.counts(carol, room); got != tc.carol {
						t.Errorf("carol: %s, want %s", got, tc.carol)
					}
				}
				onlyAlice := true
				for _, x := range tc.events {
					onlyAlice = onlyAlice && x.sender == alice
				}
				if got := e.counts(alice, room); onlyAlice && got != "0/0" {
					t.Errorf("alice (sender of the setup): %s", got)
				}
			})
		}
	})
}

// TestReceiptsRulesAndRestart: receipts reset counts (threaded ones only
// their thread), a rule change applies to the next event, /sync carries
// the counts, and a restart neither loses nor double-counts.
func TestReceiptsRulesAndRestart(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		room := e.room(bob, carol)
		root := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"root"}`)
		e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"r","m.relates_to":{"rel_type":"m.thread","event_id":"`+root+`"}}`)
		last := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"m","m.mentions":{"user_ids":["`+bob+`"]}}`)
		if got := e.counts(bob, room); got != "2/1 "+root+":1/0" {
			t.Fatalf("before receipts: %s", got)
		}
		// /sync reports the same counts.
		resp, err := e.sync.Sync(ctx, syncapi.Request{UserID: bob, DeviceID: "B"})
		if err != nil {
			t.Fatal(err)
		}
		if u := resp.Rooms.Join[room].UnreadNotifications; u.NotificationCount != 3 || u.HighlightCount != 1 {
			t.Fatalf("sync unread %+v", u)
		}
		main := "main"
		if err := e.sync.PostReceipt(ctx, bob, room, "m.read.private", last, &main); err != nil {
			t.Fatal(err)
		}
		if got := e.counts(bob, room); got != "0/0 "+root+":1/0" {
			t.Fatalf("after the main-timeline receipt: %s", got)
		}
		if err := e.sync.PostReceipt(ctx, bob, room, "m.read", last, nil); err != nil {
			t.Fatal(err)
		}
		if got := e.counts(bob, room); got != "0/0" {
			t.Fatalf("after the unthreaded receipt: %s", got)
		}
		// Bob turns off .m.rule.message: group messages stop counting.
		if err := e.n.EditRules(ctx, bob, func(u *pushrules.UserRules) error {
			return u.SetEnabled(bob, pushrules.KindUnderride, ".m.rule.message", false)
		}); err != nil {
			t.Fatal(err)
		}
		if ad, err := e.sync.AccountData(ctx, bob, "", "m.push_rules"); err != nil || !strings.Contains(string(ad), `"enabled":false,"actions":["notify"],"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.message"}]`) {
			t.Fatalf("m.push_rules account data: %s %v", ad, err)
		}
		e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"quiet"}`)
		if got := e.counts(bob, room); got != "0/0" {
			t.Fatalf("with .m.rule.message off: %s", got)
		}
		// Restart with events sent while the notifier was down: counted once.
		e.stop()
		e.start()
		for i := range 10 { // more than a batch (7)
			e.send(room, alice, "m.room.message", fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i))
		}
		e.stop()
		e.start()
		if got := e.counts(carol, room); got != "13/0 "+root+":1/0" {
			t.Fatalf("carol after restarts: %s", got)
		}
		page, err := e.n.Notifications(ctx, roomserver.Viewer{UserID: carol}, "", 5, false)
		if err != nil || len(page.Notifications) != 5 || page.NextToken == "" || page.Notifications[0].Event.EventID == "" {
			t.Fatalf("notifications page: %+v %v", page, err)
		}
		page, err = e.n.Notifications(ctx, roomserver.Viewer{UserID: bob}, "", 50, true)
		if err != nil || len(page.Notifications) != 1 || page.Notifications[0].Event.EventID != last || !page.Notifications[0].Read {
			t.Fatalf("bob's highlights: %+v %v", page, err)
		}
	})
}

// TestDrainsAfterLoad: events sent as fast as the roomserver takes them
// are all evaluated within about a second of the last one (issue 7).
func TestDrainsAfterLoad(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		room := e.room(bob, carol)
		const n = 300
		done := make(chan error, 3)
		for _, sender := range []string{alice, bob, carol} {
			go func() {
				for i := range n / 3 {
					_, err := e.rooms.Send(context.Background(), roomserver.SendRequest{RoomID: room, Sender: sender, Type: "m.room.message",
						Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i))})
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		for range 3 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		stopped := time.Now()
		target := e.rooms.Notifier().Position()
		for e.n.Position() < target {
			if time.Since(stopped) > 5*time.Second {
				t.Fatalf("not drained after 5s: at %d of %d", e.n.Position(), target)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("drained %v after the load stopped", time.Since(stopped))
		if time.Since(stopped) > 1500*time.Millisecond {
			t.Errorf("drain took %v", time.Since(stopped))
		}
		// Each user is notified for the other two senders' messages.
		if got := e.counts(bob, room); got != "200/0" {
			t.Fatalf("bob: %s", got)
		}
	})
}

// TestCountReadEndsTheGather: while nobody waits for counts the consumer
// lets events gather before a batch (here for an hour); a count read —
// what a /sync does for the events it returns — ends the wait at once and
// sees the new event. Without that the read would wait catchUpWait and
// return the counts from before the message.
func TestCountReadEndsTheGather(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		room := e.room(bob)
		if got := e.counts(bob, room); got != "0/0" {
			t.Fatalf("before: %s", got)
		}
		e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"hi"}`)
		start := time.Now()
		if got := e.counts(bob, room); got != "1/0" {
			t.Fatalf("after a message: %s", got)
		}
		if waited := time.Since(start); waited >= time.Second {
			t.Fatalf("the count read waited %v: the gather did not end", waited)
		}
		if pos, want := e.n.Position(), e.rooms.Notifier().Position(); pos < want {
			t.Fatalf("consumer at %d, log at %d", pos, want)
		}
	}, func(e *env) { e.gather = time.Hour })
}
