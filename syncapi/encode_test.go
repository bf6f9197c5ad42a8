package syncapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"myelin/roomserver"
)

// clientEvent is encoding/json's rendering of a ClientEvent, the reference
// appendClientEvent must match.
type clientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       *unsigned       `json:"unsigned,omitempty"`
}

// sameJSON fails unless a and b are valid JSON with the same value.
func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("invalid reference JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestAppendClientEvent(t *testing.T) {
	sk, empty := "@bob:x", ""
	redactor := roomserver.ClientEvent{Content: json.RawMessage(`{"reason":"spam"}`), EventID: "$r", Sender: "@mod:x",
		Type: "m.room.redaction", Redacts: "$a", Unsigned: &roomserver.Unsigned{Age: 3}}
	for _, tc := range []struct {
		name       string
		ce         roomserver.ClientEvent
		membership string
		withRoomID bool
	}{
		{name: "message", ce: roomserver.ClientEvent{Content: json.RawMessage(`{"body":"hi","msgtype":"m.text"}`),
			EventID: "$a", OriginServerTS: 1700000000000, RoomID: "!r:x", Sender: "@alice:x", Type: "m.room.message",
			Unsigned: &roomserver.Unsigned{Age: 12, TransactionID: "t1"}}, membership: "join"},
		{name: "with room ID", ce: roomserver.ClientEvent{Content: json.RawMessage(`{}`), EventID: "$a", RoomID: "!r:x",
			Sender: "@alice:x", Type: "m.room.message"}, withRoomID: true},
		{name: "no unsigned, no membership", ce: roomserver.ClientEvent{Content: json.RawMessage(`{"a":1}`), EventID: "$a",
			Sender: "@alice:x", Type: "m.custom"}},
		{name: "membership only", ce: roomserver.ClientEvent{Content: json.RawMessage(`{}`), EventID: "$a",
			Sender: "@alice:x", Type: "m.custom"}, membership: "leave"},
		{name: "state with prev_content", ce: roomserver.ClientEvent{Content: json.RawMessage(`{"membership":"join"}`),
			EventID: "$m", Sender: "@bob:x", StateKey: &sk, Type: "m.room.member",
			Unsigned: &roomserver.Unsigned{Age: 1, PrevContent: json.RawMessage(`{"membership":"invite"}`), PrevSender: "@alice:x",
				ReplacesState: "$i"}}, membership: "join"},
		{name: "empty state key", ce: roomserver.ClientEvent{Content: json.RawMessage(`{"name":"Room"}`), EventID: "$n",
			Sender: "@alice:x", StateKey: &empty, Type: "m.room.name", Unsigned: &roomserver.Unsigned{}}},
		{name: "escaped strings", ce: roomserver.ClientEvent{Content: json.RawMessage(`{"body":"<b>\u00e9\"</b>"}`),
			EventID: "$a\"<>&\\", Sender: "@é:x", Type: "m.ty\npe\u2028", Unsigned: &roomserver.Unsigned{TransactionID: "tx\t\x01"}}},
		{name: "redaction", ce: redactor},
		{name: "redacted event", ce: roomserver.ClientEvent{Content: json.RawMessage(`{}`), EventID: "$a", Sender: "@alice:x",
			Type: "m.room.message", Unsigned: &roomserver.Unsigned{Age: 5, RedactedBecause: &redactor}}, membership: "join"},
		{name: "bundled aggregations", ce: roomserver.ClientEvent{Content: json.RawMessage(`{"body":"root"}`), EventID: "$t",
			Sender: "@alice:x", Type: "m.room.message", Unsigned: &roomserver.Unsigned{Age: 5,
				Relations: &roomserver.Relations{Thread: &roomserver.ThreadSummary{Count: 2}}}}},
		{name: "nil content", ce: roomserver.ClientEvent{EventID: "$a", Sender: "@alice:x", Type: "m.room.message"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendClientEvent(nil, tc.ce, tc.membership, tc.withRoomID)
			ref := clientEvent{Content: tc.ce.Content, EventID: tc.ce.EventID, OriginServerTS: tc.ce.OriginServerTS,
				Sender: tc.ce.Sender, StateKey: tc.ce.StateKey, Type: tc.ce.Type, Redacts: tc.ce.Redacts}
			if tc.withRoomID {
				ref.RoomID = tc.ce.RoomID
			}
			if tc.ce.Unsigned != nil || tc.membership != "" {
				ref.Unsigned = &unsigned{Unsigned: tc.ce.Unsigned, Membership: tc.membership}
			}
			want, err := json.Marshal(ref)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, got, want)
		})
	}
}

// plainResponse has Response's fields without its MarshalJSON: what
// encoding/json writes for it is the reference.
type plainResponse Response

func TestResponseAppendJSON(t *testing.T) {
	ev := func(s string) json.RawMessage { return json.RawMessage(s) }
	n, m := 3, 1
	full := newResponse(Token{Events: 7})
	full.Rooms.Join["!b:x"] = &JoinedRoom{
		Summary:                   &Summary{Heroes: []string{"@a:x"}, JoinedMemberCount: &n, InvitedMemberCount: &m},
		State:                     &EventBatch{Events: []json.RawMessage{ev(`{"type":"m.room.create","content":{}}`)}},
		Timeline:                  Timeline{Events: []json.RawMessage{ev(`{"type":"m.room.message","content":{"body":"<x>"}}`), nil}, Limited: true, PrevBatch: "t5"},
		Ephemeral:                 EventBatch{Events: []json.RawMessage{ev(`{"type":"m.typing","content":{"user_ids":[]}}`)}},
		AccountData:               EventBatch{Events: []json.RawMessage{}},
		UnreadNotifications:       NotificationCounts{HighlightCount: 1, NotificationCount: 4},
		UnreadThreadNotifications: map[string]NotificationCounts{"$t": {NotificationCount: 2}},
	}
	full.Rooms.Join["!a:x"] = &JoinedRoom{StateAfter: &EventBatch{Events: []json.RawMessage{}},
		Timeline: Timeline{Events: []json.RawMessage{}}, Ephemeral: EventBatch{Events: []json.RawMessage{}},
		AccountData: EventBatch{Events: []json.RawMessage{ev(`{"type":"m.tag","content":{"tags":{}}}`)}}}
	full.Rooms.Leave["!l:x"] = &LeftRoom{State: &EventBatch{Events: []json.RawMessage{}},
		Timeline: Timeline{Events: []json.RawMessage{ev(`{"type":"m.room.member","content":{"membership":"leave"}}`)}}}
	full.Rooms.Invite["!i:x"] = &InvitedRoom{InviteState: EventBatch{Events: []json.RawMessage{ev(`{"type":"m.room.name","content":{"name":"I"}}`)}}}
	full.Rooms.Knock["!k\"\u00e9:x"] = &KnockedRoom{KnockState: EventBatch{Events: []json.RawMessage{}}}
	full.Presence.Events = []json.RawMessage{ev(`{"type":"m.presence","sender":"@a:x","content":{"presence":"online"}}`)}
	full.AccountData.Events = []json.RawMessage{ev(`{"type":"m.push_rules","content":{}}`)}
	full.ToDevice.Events = []json.RawMessage{ev(`{"type":"m.room_key","content":{}}`)}
	full.DeviceLists = DeviceLists{Changed: []string{"@a:x"}, Left: []string{}}
	full.DeviceOneTimeKeysCount = map[string]int{"signed_curve25519": 10}
	full.DeviceUnusedFallbackKeyTypes = []string{"signed_curve25519"}

	for _, tc := range []struct {
		name string
		r    *Response
	}{
		{"empty", newResponse(Token{})},
		{"zero value", &Response{}},
		{"every section", full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal((*plainResponse)(tc.r))
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, tc.r.AppendJSON(nil), want)
			viaMarshal, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, viaMarshal, want)
		})
	}
}

// plainMessages is MessagesResponse without its MarshalJSON: encoding/json's
// rendering, the reference AppendJSON must match.
type plainMessages MessagesResponse

func TestMessagesResponseAppendJSON(t *testing.T) {
	ev := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, tc := range []struct {
		name string
		r    *MessagesResponse
	}{
		{"zero value", &MessagesResponse{}},
		{"empty page, history exhausted", &MessagesResponse{Start: "s12", Chunk: []json.RawMessage{}}},
		{"page with end", &MessagesResponse{Start: "s12", End: "s2", Chunk: []json.RawMessage{
			ev(`{"type":"m.room.message","content":{"body":"<\u00e9>"}}`), ev(`{"type":"m.room.name","state_key":"","content":{}}`)}}},
		{"lazy-loaded members", &MessagesResponse{Start: "s\"9", End: "s1", Chunk: []json.RawMessage{ev(`{"type":"m.room.message","content":{}}`)},
			State: []json.RawMessage{ev(`{"type":"m.room.member","state_key":"@a:x","content":{"membership":"join"}}`)}}},
		{"empty state is omitted", &MessagesResponse{Start: "s3", Chunk: []json.RawMessage{}, State: []json.RawMessage{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal((*plainMessages)(tc.r))
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, tc.r.AppendJSON(nil), want)
			prefix := []byte("x")
			if got := tc.r.AppendJSON(prefix); string(got[:1]) != "x" {
				t.Fatalf("AppendJSON did not append to its buffer: %s", got)
			}
		})
	}
}

// TestEncoderCoversFields fails when a field is added to a type the
// hand-written encoders write, so the encoder is updated with it.
func TestEncoderCoversFields(t *testing.T) {
	for _, tc := range []struct {
		v      any
		fields int
	}{
		{Response{}, 8}, {Rooms{}, 4}, {JoinedRoom{}, 8}, {LeftRoom{}, 4}, {InvitedRoom{}, 1}, {KnockedRoom{}, 1},
		{Timeline{}, 3}, {EventBatch{}, 1}, {NotificationCounts{}, 2}, {roomserver.ClientEvent{}, 9},
		{roomserver.Unsigned{}, 7}, {MessagesResponse{}, 4},
	} {
		if got := reflect.TypeOf(tc.v).NumField(); got != tc.fields {
			t.Errorf("%T has %d fields, the encoder in encode.go writes %d: update it", tc.v, got, tc.fields)
		}
	}
}

// BenchmarkMessagesPageEncode writes a 100-event /messages page with its
// appender and, for comparison, with json.Marshal (what the handler did
// before: it re-validates and compacts every event).
func BenchmarkMessagesPageEncode(b *testing.B) {
	ce := roomserver.ClientEvent{
		Content:        json.RawMessage(`{"body":"` + strings.Repeat("x", 100) + `","msgtype":"m.text","m.mentions":{}}`),
		EventID:        "$" + strings.Repeat("a", 43),
		OriginServerTS: 1_700_000_000_000,
		Sender:         "@loaduser7:localhost",
		Type:           "m.room.message",
		Unsigned:       &roomserver.Unsigned{Age: 1234},
	}
	page := &MessagesResponse{Start: "s4021", End: "s3921"}
	for range 100 {
		page.Chunk = append(page.Chunk, appendClientEvent(nil, ce, "join", false))
	}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = page.AppendJSON(nil)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal((*plainMessages)(page)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
