package pusher

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func ptr(s string) *string { return &s }

func TestBuildNotify(t *testing.T) {
	msg := eventInfo{EventID: "$ev", RoomID: "!r:hs", Type: "m.room.message", Sender: "@alice:hs",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), SenderDisplayName: "Alice", RoomName: "Surgery", RoomAlias: "#surgery:hs"}
	full := device{AppID: "com.example.app", PushKey: "key1", Data: json.RawMessage(`{"url":"https://gw/_matrix/push/v1/notify","custom":{"a":1}}`), CreatedTS: 1700000000123}
	idOnly := device{AppID: "com.example.app", PushKey: "key2", Data: json.RawMessage(`{"url":"https://gw/_matrix/push/v1/notify","format":"event_id_only"}`), CreatedTS: 1700000000999}
	invite := eventInfo{EventID: "$inv", RoomID: "!r:hs", Type: "m.room.member", Sender: "@alice:hs", StateKey: ptr("@bob:hs"),
		Content: json.RawMessage(`{"membership":"invite"}`), SenderDisplayName: "Alice"}
	otherMember := invite
	otherMember.StateKey = ptr("@carol:hs")
	encrypted := eventInfo{EventID: "$enc", RoomID: "!r:hs", Type: "m.room.encrypted", Sender: "@alice:hs", Content: json.RawMessage(`{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x"}`)}
	redacted := msg
	redacted.Content = json.RawMessage(`{}`)

	tests := []struct {
		name    string
		ev      eventInfo
		dev     device
		actions string
		unread  int64
		want    string
	}{
		{"full format, plain message", msg, full, `["notify"]`, 3,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","type":"m.room.message","sender":"@alice:hs","sender_display_name":"Alice",
			"room_name":"Surgery","room_alias":"#surgery:hs","prio":"low","content":{"msgtype":"m.text","body":"hi"},"counts":{"unread":3},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{}}]}}`},
		{"full format, sound and highlight", msg, full, `["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`, 1,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","type":"m.room.message","sender":"@alice:hs","sender_display_name":"Alice",
			"room_name":"Surgery","room_alias":"#surgery:hs","prio":"high","content":{"msgtype":"m.text","body":"hi"},"counts":{"unread":1},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{"sound":"default","highlight":true}}]}}`},
		{"highlight false stays low", msg, full, `["notify",{"set_tweak":"highlight","value":false}]`, 0,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","type":"m.room.message","sender":"@alice:hs","sender_display_name":"Alice",
			"room_name":"Surgery","room_alias":"#surgery:hs","prio":"low","content":{"msgtype":"m.text","body":"hi"},"counts":{},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{"highlight":false}}]}}`},
		{"event_id_only", msg, idOnly, `["notify",{"set_tweak":"sound","value":"default"}]`, 2,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","prio":"high","counts":{"unread":2},
			"devices":[{"app_id":"com.example.app","pushkey":"key2","pushkey_ts":1700000000,"data":{"format":"event_id_only"},"tweaks":{"sound":"default"}}]}}`},
		{"event_id_only, no tweaks", msg, idOnly, `["notify"]`, 0,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","prio":"low","counts":{},
			"devices":[{"app_id":"com.example.app","pushkey":"key2","pushkey_ts":1700000000,"data":{"format":"event_id_only"},"tweaks":{}}]}}`},
		{"invite for the user", invite, full, `["notify",{"set_tweak":"sound","value":"default"}]`, 1,
			`{"notification":{"event_id":"$inv","room_id":"!r:hs","type":"m.room.member","sender":"@alice:hs","sender_display_name":"Alice",
			"user_is_target":true,"prio":"high","content":{"membership":"invite"},"counts":{"unread":1},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{"sound":"default"}}]}}`},
		{"member event about someone else", otherMember, full, `["notify"]`, 1,
			`{"notification":{"event_id":"$inv","room_id":"!r:hs","type":"m.room.member","sender":"@alice:hs","sender_display_name":"Alice",
			"user_is_target":false,"prio":"low","content":{"membership":"invite"},"counts":{"unread":1},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{}}]}}`},
		{"encrypted is high priority, content included", encrypted, full, `["notify"]`, 1,
			`{"notification":{"event_id":"$enc","room_id":"!r:hs","type":"m.room.encrypted","sender":"@alice:hs","prio":"high",
			"content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x"},"counts":{"unread":1},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{}}]}}`},
		{"redacted content left out", redacted, full, `["notify"]`, 1,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","type":"m.room.message","sender":"@alice:hs","sender_display_name":"Alice",
			"room_name":"Surgery","room_alias":"#surgery:hs","prio":"low","counts":{"unread":1},
			"devices":[{"app_id":"com.example.app","pushkey":"key1","pushkey_ts":1700000000,"data":{"custom":{"a":1}},"tweaks":{}}]}}`},
		{"url-only data forwards an empty object", msg, device{AppID: "a", PushKey: "k", Data: json.RawMessage(`{"url":"https://gw/_matrix/push/v1/notify"}`), CreatedTS: 5000},
			`["notify","dont_notify"]`, 0,
			`{"notification":{"event_id":"$ev","room_id":"!r:hs","type":"m.room.message","sender":"@alice:hs","sender_display_name":"Alice",
			"room_name":"Surgery","room_alias":"#surgery:hs","prio":"low","content":{"msgtype":"m.text","body":"hi"},"counts":{},
			"devices":[{"app_id":"a","pushkey":"k","pushkey_ts":5,"data":{},"tweaks":{}}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := buildNotify(tt.ev, "@bob:hs", tt.dev, json.RawMessage(tt.actions), tt.unread)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("body\n got %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestPusherData(t *testing.T) {
	tests := []struct {
		raw, url, format string
		bad              bool
	}{
		{`{"url":"https://gw/_matrix/push/v1/notify"}`, "https://gw/_matrix/push/v1/notify", "", false},
		{`{"url":"https://gw/_matrix/push/v1/notify","format":"event_id_only"}`, "https://gw/_matrix/push/v1/notify", "event_id_only", false},
		{`{"format":7}`, "", "", false},
		{`{"url":7}`, "", "", true},
		{`[]`, "", "", true},
		{`null`, "", "", true},
	}
	for _, tt := range tests {
		u, f, _, err := pusherData(json.RawMessage(tt.raw))
		if (err != nil) != tt.bad || u != tt.url || f != tt.format {
			t.Errorf("pusherData(%s) = %q %q %v", tt.raw, u, f, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	lowest := func(n int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		streak   int
		min, max time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{5, 8 * time.Second, 16 * time.Second},
		{10, 30 * time.Second, time.Minute}, // 512 s capped at 60 s
		{40, 30 * time.Second, time.Minute}, // no overflow
		{1000, 30 * time.Second, time.Minute},
	}
	for _, tt := range tests {
		lo := backoff(tt.streak, time.Second, time.Minute, lowest)
		hi := backoff(tt.streak, time.Second, time.Minute, highest)
		if lo != tt.min || hi != tt.max {
			t.Errorf("backoff(%d) spans [%v, %v], want [%v, %v]", tt.streak, lo, hi, tt.min, tt.max)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for h, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "Wed, 21 Oct 2015 07:28:00 GMT": 0} {
		if got := retryAfter(h); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}
