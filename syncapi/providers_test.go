package syncapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeE2EE is an in-memory to-device inbox, device-list tracker and key
// counter, standing in for the component that will own them.
type fakeE2EE struct {
	mu       sync.Mutex
	pos      int64
	msgs     []fakeMsg
	acked    int64 // highest position a sync has acknowledged
	lists    int64
	changes  map[int64]string
	otk      map[string]int
	fallback []string
}

type fakeMsg struct {
	pos  int64
	body json.RawMessage
}

func (f *fakeE2EE) StreamKey() string { return "d" }
func (f *fakeE2EE) StreamPosition() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos
}
func (f *fakeE2EE) add(body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pos++
	f.msgs = append(f.msgs, fakeMsg{f.pos, json.RawMessage(body)})
}
func (f *fakeE2EE) ToDevice(_ context.Context, _, _ string, since, upTo int64, limit int) ([]json.RawMessage, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acked = max(f.acked, since)
	var out []json.RawMessage
	for _, m := range f.msgs {
		if m.pos > since && m.pos <= upTo {
			if len(out) == limit {
				return out, m.pos - 1, nil
			}
			out = append(out, m.body)
		}
	}
	return out, upTo, nil
}

type fakeLists struct{ *fakeE2EE }

func (f fakeLists) StreamKey() string { return "k" }
func (f fakeLists) StreamPosition() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}
func (f fakeLists) DeviceListChanges(_ context.Context, _ string, w DeviceListWindow) ([]string, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.Initial {
		return nil, nil, nil // the spec expects none in an initial sync
	}
	var changed []string
	for p, u := range f.changes {
		if p > w.Since && p <= w.UpTo {
			changed = append(changed, u)
		}
	}
	slices.Sort(changed)
	return changed, nil, nil
}
func (f *fakeE2EE) OneTimeKeyCounts(context.Context, string, string) (map[string]int, error) {
	return f.otk, nil
}
func (f *fakeE2EE) UnusedFallbackKeyTypes(context.Context, string, string) ([]string, error) {
	return f.fallback, nil
}

type fakeUnread struct{}

func (fakeUnread) UnreadCounts(_ context.Context, _ string, rooms []string, threads bool) (map[string]UnreadCounts, error) {
	out := map[string]UnreadCounts{}
	for i, r := range rooms {
		c := UnreadCounts{Highlight: int64(i), Notification: int64(i + 3)}
		if threads {
			c.Threads = map[string]UnreadCounts{"$root": {Highlight: 1, Notification: 2}}
		}
		out[r] = c
	}
	return out, nil
}

func TestProviders(t *testing.T) {
	fake := &fakeE2EE{changes: map[int64]string{}, otk: map[string]int{"signed_curve25519": 17}, fallback: []string{"signed_curve25519"}}
	eachEngine(t, func(o *Options) {
		o.ToDevice, o.DeviceLists, o.Keys, o.Unread = fake, fakeLists{fake}, fake, fakeUnread{}
	}, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Crypto", bob)
		fake.mu.Lock()
		fake.pos, fake.msgs, fake.acked, fake.lists = 0, nil, 0, 0
		fake.mu.Unlock()

		first := e.do(Request{UserID: bob})
		if first.OTKCount["signed_curve25519"] != 17 || !slices.Equal(first.FallbackTypes, []string{"signed_curve25519"}) {
			t.Fatalf("key counts %v fallback %v", first.OTKCount, first.FallbackTypes)
		}
		j := first.Rooms.Join[room]
		if j.Unread == nil || j.Unread.Notification == nil || *j.Unread.Notification != 3 {
			t.Fatalf("unread counts = %+v", j.Unread)
		}
		tok, _ := ParseToken(first.NextBatch)
		if _, ok := tok.Ext["d"]; !ok {
			t.Fatalf("token lacks the to-device stream: %s", first.NextBatch)
		}

		// A to-device message wakes a long-poll through Wake.
		done := make(chan syncResp, 1)
		go func() { done <- e.do(Request{UserID: bob, Since: first.NextBatch, Timeout: 20 * time.Second}) }()
		waitWaiting(t, e, 1)
		fake.add(`{"type":"m.room_key_request","sender":"@alice:clinic.test","content":{}}`)
		e.sync.Wake(bob)
		r := waitSync(t, done)
		if len(r.ToDevice.Events) != 1 || r.ToDevice.Events[0].Type != "m.room_key_request" {
			t.Fatalf("to_device = %+v", r.ToDevice)
		}
		// More than one response's worth: delivered in order across syncs,
		// each acknowledged by the next since.
		for i := 0; i < toDeviceLimit+5; i++ {
			fake.add(fmt.Sprintf(`{"type":"m.dummy","sender":"@alice:clinic.test","content":{"n":%d}}`, i))
		}
		r1 := e.do(Request{UserID: bob, Since: r.NextBatch})
		r2 := e.do(Request{UserID: bob, Since: r1.NextBatch})
		if len(r1.ToDevice.Events) != toDeviceLimit || len(r2.ToDevice.Events) != 5 {
			t.Fatalf("to-device batches %d then %d", len(r1.ToDevice.Events), len(r2.ToDevice.Events))
		}
		fake.mu.Lock()
		acked := fake.acked
		fake.mu.Unlock()
		if t1, _ := ParseToken(r1.NextBatch); acked != t1.Ext["d"] {
			t.Fatalf("acknowledged %d, want %d", acked, t1.Ext["d"])
		}
		// A retried sync from the same since gets the same messages again.
		if again := e.do(Request{UserID: bob, Since: r1.NextBatch}); len(again.ToDevice.Events) != 5 {
			t.Fatalf("retry got %d messages", len(again.ToDevice.Events))
		}

		// Device-list changes.
		fake.mu.Lock()
		fake.lists++
		fake.changes[fake.lists] = alice
		fake.mu.Unlock()
		dl := e.do(Request{UserID: bob, Since: r2.NextBatch})
		if !slices.Equal(dl.DeviceLists.Changed, []string{alice}) || dl.DeviceLists.Left == nil {
			t.Fatalf("device_lists = %+v", dl.DeviceLists)
		}
		// Thread counts only when the filter asks.
		th, err := e.sync.Sync(ctxT(t), Request{UserID: bob, DeviceID: "D", Filter: `{"room":{"timeline":{"unread_thread_notifications":true}}}`})
		if err != nil {
			t.Fatal(err)
		}
		if th.Rooms.Join[room].UnreadThreadNotifications["$root"].NotificationCount != 2 {
			t.Fatalf("thread counts = %+v", th.Rooms.Join[room].UnreadThreadNotifications)
		}
		if r := e.do(Request{UserID: bob}); r.Rooms.Join[room].Unread == nil {
			t.Fatal("unread counts missing")
		}
	})
}

func TestProviderKeys(t *testing.T) {
	cases := []struct {
		todevice, lists string
		ok              bool
	}{
		{"d", "k", true},
		{"todevice", "lists", true},
		{"", "k", false},
		{"e", "k", false},
		{"a", "k", false},
		{"y", "k", false},
		{"D", "k", false},
		{"x1", "k", false},
		{"toolongkey", "k", false},
		{"d", "d", false},
	}
	for _, c := range cases {
		err := checkProviderKeys(Options{ToDevice: keyed(c.todevice), DeviceLists: keyedLists{keyed(c.lists)}})
		if (err == nil) != c.ok {
			t.Errorf("keys %q, %q: err = %v", c.todevice, c.lists, err)
		}
	}
	if err := checkProviderKeys(Options{}); err != nil {
		t.Errorf("no providers: %v", err)
	}
}

type keyedLists struct{ keyed }

func (keyedLists) DeviceListChanges(context.Context, string, DeviceListWindow) ([]string, []string, error) {
	return nil, nil, nil
}

type keyed string

func (k keyed) StreamKey() string     { return string(k) }
func (k keyed) StreamPosition() int64 { return 0 }
func (k keyed) ToDevice(context.Context, string, string, int64, int64, int) ([]json.RawMessage, int64, error) {
	return nil, 0, nil
}

// waitingUnread records the positions a sync asks it to catch up with.
type waitingUnread struct {
	fakeUnread
	mu    sync.Mutex
	waits []int64
}

func (w *waitingUnread) WaitCounted(_ context.Context, pos int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waits = append(w.waits, pos)
}

func (w *waitingUnread) taken() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.waits
	w.waits = nil
	return out
}

// A sync that may carry new events lets the counter catch up with its own
// position (not a later one); one with no new events does not wait.
func TestSyncWaitsForCountsAtItsPosition(t *testing.T) {
	w := &waitingUnread{}
	eachEngine(t, func(o *Options) { o.Unread = w }, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Counts", bob)
		w.taken()
		first := e.do(Request{UserID: bob})
		tok, _ := ParseToken(first.NextBatch)
		for _, tc := range []struct {
			name  string
			since string
			send  bool
			want  []int64
		}{
			{"initial", "", false, []int64{tok.Events}},
			{"nothing new", first.NextBatch, false, nil},
			{"a new event", first.NextBatch, true, []int64{tok.Events + 1}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.send {
					e.send(room, alice, "hello")
				}
				w.taken()
				r := e.do(Request{UserID: bob, Since: tc.since})
				if got := w.taken(); !slices.Equal(got, tc.want) {
					t.Fatalf("waited for %v, want %v (next_batch %s)", got, tc.want, r.NextBatch)
				}
			})
		}
	})
}
