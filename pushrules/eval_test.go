package pushrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

const alice = "@alice:example.org"

// NewEvent is the reference the tests describe events with: the whole
// event's JSON (client or federation format), flattened as NewEventOf
// flattens the fields and content it is given
// (TestNewEventOfMatchesNewEvent).
func NewEvent(js []byte) (*Event, error) {
	var m map[string]any
	if err := decodeNumbers(js, &m); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	ev := newEvent()
	ev.walk("", m)
	ev.finish()
	return ev, nil
}

func ev(t testing.TB, js string) *Event {
	t.Helper()
	e, err := NewEvent([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func msg(body string, extra string) string {
	b, _ := json.Marshal(body)
	return fmt.Sprintf(`{"type":"m.room.message","sender":"@bob:example.org","room_id":"!r:example.org","content":{"msgtype":"m.text","body":%s%s}}`, b, extra)
}

func TestDefaultRules(t *testing.T) {
	group := &Room{MemberCount: 5, SenderPower: 0}
	dm := &Room{MemberCount: 2}
	mod := &Room{MemberCount: 5, SenderPower: 50}
	tests := []struct {
		name      string
		event     string
		room      *Room
		rule      string
		notify    bool
		highlight bool
	}{
		{"plain message in group", msg("hello", ""), group, ".m.rule.message", true, false},
		{"message in DM", msg("hello", ""), dm, ".m.rule.room_one_to_one", true, false},
		{"encrypted in DM", `{"type":"m.room.encrypted","sender":"@bob:example.org","content":{"ciphertext":"x"}}`, dm, ".m.rule.encrypted_room_one_to_one", true, false},
		{"encrypted in group", `{"type":"m.room.encrypted","sender":"@bob:example.org","content":{"ciphertext":"x"}}`, group, ".m.rule.encrypted", true, false},
		{"notice suppressed", `{"type":"m.room.message","sender":"@bob:example.org","content":{"msgtype":"m.notice","body":"bot"}}`, group, ".m.rule.suppress_notices", false, false},
		{"invite for me", `{"type":"m.room.member","state_key":"@alice:example.org","sender":"@bob:example.org","content":{"membership":"invite"}}`, group, ".m.rule.invite_for_me", true, false},
		{"invite for someone else", `{"type":"m.room.member","state_key":"@carol:example.org","sender":"@bob:example.org","content":{"membership":"invite"}}`, group, ".m.rule.member_event", false, false},
		{"join", `{"type":"m.room.member","state_key":"@bob:example.org","sender":"@bob:example.org","content":{"membership":"join"}}`, group, ".m.rule.member_event", false, false},
		{"user mention", msg("hi", `,"m.mentions":{"user_ids":["@alice:example.org"]}`), group, ".m.rule.is_user_mention", true, true},
		{"other user's mention", msg("hi", `,"m.mentions":{"user_ids":["@carol:example.org"]}`), group, ".m.rule.message", true, false},
		{"name in body is no mention (legacy rules removed)", msg("alice: hi", `,"m.mentions":{}`), group, ".m.rule.message", true, false},
		{"room mention by moderator", msg("@room", `,"m.mentions":{"room":true}`), mod, ".m.rule.is_room_mention", true, true},
		{"room mention without power", msg("@room", `,"m.mentions":{"room":true}`), group, ".m.rule.message", true, false},
		{"room mention as string is not true", msg("@room", `,"m.mentions":{"room":"true"}`), mod, ".m.rule.message", true, false},
		{"tombstone", `{"type":"m.room.tombstone","state_key":"","sender":"@bob:example.org","content":{"body":"moved"}}`, group, ".m.rule.tombstone", true, true},
		{"tombstone with state key is not the rule", `{"type":"m.room.tombstone","state_key":"x","sender":"@bob:example.org","content":{}}`, group, "", false, false},
		{"reaction", `{"type":"m.reaction","sender":"@bob:example.org","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}}`, group, ".m.rule.reaction", false, false},
		{"server acl", `{"type":"m.room.server_acl","state_key":"","sender":"@bob:example.org","content":{}}`, group, ".m.rule.room.server_acl", false, false},
		{"edit", msg("* fixed", `,"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}`), group, ".m.rule.suppress_edits", false, false},
		{"call", `{"type":"m.call.invite","sender":"@bob:example.org","content":{}}`, group, ".m.rule.call", true, false},
		{"topic change matches nothing", `{"type":"m.room.topic","state_key":"","sender":"@bob:example.org","content":{"topic":"x"}}`, group, "", false, false},
	}
	e := Compile((&UserRules{}).Effective(alice))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e.Evaluate(ev(t, tc.event), tc.room, "Alice")
			if got.RuleID != tc.rule || got.Notify != tc.notify || got.Highlight != tc.highlight {
				t.Fatalf("got rule %q notify %v highlight %v; want %q %v %v", got.RuleID, got.Notify, got.Highlight, tc.rule, tc.notify, tc.highlight)
			}
			// The actions encoded at compile time are the matched rule's.
			want := []byte(nil)
			if got.Matched {
				want, _ = json.Marshal(got.Actions)
			}
			if !bytes.Equal(got.ActionsJSON, want) {
				t.Fatalf("ActionsJSON %s, want %s", got.ActionsJSON, want)
			}
		})
	}
}

func TestMasterRuleSilencesEverything(t *testing.T) {
	u := &UserRules{}
	if err := u.SetEnabled(alice, KindOverride, MasterRuleID, true); err != nil {
		t.Fatal(err)
	}
	if err := u.Put(KindOverride, "mine", NewRule{Actions: json.RawMessage(`["notify"]`)}, "", ""); err != nil {
		t.Fatal(err)
	}
	got := Compile(u.Effective(alice)).Evaluate(ev(t, msg("x", `,"m.mentions":{"user_ids":["@alice:example.org"]}`)), &Room{MemberCount: 2}, "")
	if got.RuleID != MasterRuleID || got.Notify {
		t.Fatalf("got %+v", got)
	}
}

func TestGlobsAndConditions(t *testing.T) {
	p := func(s string) *string { return &s }
	tests := []struct {
		name  string
		cond  Condition
		event string
		room  Room
		want  bool
	}{
		{"glob star case-insensitive", Condition{Kind: CondEventMatch, Key: "content.topic", Pattern: p("lunc?*")}, `{"content":{"topic":"LUNCH"}}`, Room{}, true},
		{"glob must match whole value", Condition{Kind: CondEventMatch, Key: "content.topic", Pattern: p("lunc?*")}, `{"content":{"topic":" lunch"}}`, Room{}, false},
		{"? needs a character", Condition{Kind: CondEventMatch, Key: "content.topic", Pattern: p("lunc?*")}, `{"content":{"topic":"lunc"}}`, Room{}, false},
		{"non-string never matches *", Condition{Kind: CondEventMatch, Key: "content.topic", Pattern: p("*")}, `{"content":{"topic":null}}`, Room{}, false},
		{"absent never matches *", Condition{Kind: CondEventMatch, Key: "content.topic", Pattern: p("*")}, `{"content":{}}`, Room{}, false},
		{"body word boundaries", Condition{Kind: CondEventMatch, Key: "content.body", Pattern: p("ex*ple")}, `{"content":{"body":"An exciting triple-whammy"}}`, Room{}, true},
		{"body literal at boundary", Condition{Kind: CondEventMatch, Key: "content.body", Pattern: p("cake")}, `{"content":{"body":"the CAKE!"}}`, Room{}, true},
		{"body literal inside word", Condition{Kind: CondEventMatch, Key: "content.body", Pattern: p("cake")}, `{"content":{"body":"cupcakes"}}`, Room{}, false},
		{"escaped dot path", Condition{Kind: CondEventPropertyIs, Key: `content.m\.federate`, Value: json.RawMessage(`true`)}, `{"content":{"m.federate":true}}`, Room{}, true},
		{"is: no casting", Condition{Kind: CondEventPropertyIs, Key: `content.m\.federate`, Value: json.RawMessage(`true`)}, `{"content":{"m.federate":"true"}}`, Room{}, false},
		{"is: integer", Condition{Kind: CondEventPropertyIs, Key: "content.n", Value: json.RawMessage(`1`)}, `{"content":{"n":1}}`, Room{}, true},
		{"is: null", Condition{Kind: CondEventPropertyIs, Key: "content.n", Value: json.RawMessage(`null`)}, `{"content":{"n":null}}`, Room{}, true},
		{"contains exact element", Condition{Kind: CondEventPropertyContains, Key: "content.alt_aliases", Value: json.RawMessage(`"#a:x"`)}, `{"content":{"alt_aliases":["#b:x","#a:x"]}}`, Room{}, true},
		{"contains: partial is no match", Condition{Kind: CondEventPropertyContains, Key: "content.alt_aliases", Value: json.RawMessage(`":x"`)}, `{"content":{"alt_aliases":["#a:x"]}}`, Room{}, false},
		{"display name at boundary", Condition{Kind: CondContainsDisplayName}, `{"content":{"body":"hey alice, lunch?"}}`, Room{}, true},
		{"display name inside word", Condition{Kind: CondContainsDisplayName}, `{"content":{"body":"malice"}}`, Room{}, false},
		{"member count ==", Condition{Kind: CondRoomMemberCount, Is: "2"}, `{}`, Room{MemberCount: 2}, true},
		{"member count >", Condition{Kind: CondRoomMemberCount, Is: ">2"}, `{}`, Room{MemberCount: 2}, false},
		{"member count <=", Condition{Kind: CondRoomMemberCount, Is: "<=3"}, `{}`, Room{MemberCount: 3}, true},
		{"member count malformed", Condition{Kind: CondRoomMemberCount, Is: "two"}, `{}`, Room{MemberCount: 2}, false},
		{"notification permission custom level", Condition{Kind: CondSenderNotifPermission, Key: "room"}, `{}`, Room{SenderPower: 10, NotificationLevels: map[string]int64{"room": 10}}, true},
		{"unknown condition never matches", Condition{Kind: "org.example.magic"}, `{}`, Room{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := compileCond(tc.cond)
			if got := cc.holds(ev(t, tc.event), &tc.room, "Alice"); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUserRulesCRUD(t *testing.T) {
	u := &UserRules{}
	put := func(id, before, after string) error {
		return u.Put(KindContent, id, NewRule{Actions: json.RawMessage(`["notify",{"set_tweak":"highlight"}]`), Pattern: ptr(id)}, before, after)
	}
	for _, id := range []string{"a", "b"} {
		if err := put(id, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := put("c", "", "b"); err != nil {
		t.Fatal(err)
	}
	if err := put("d", "b", ""); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range u.Effective(alice).Content {
		ids = append(ids, r.RuleID)
	}
	if fmt.Sprint(ids) != "[d b c a]" {
		t.Fatalf("order %v", ids)
	}
	for _, tc := range []struct {
		name string
		err  error
		fn   func() error
	}{
		{"default id refused", ErrInvalid, func() error { return put(".m.rule.x", "", "") }},
		{"slash refused", ErrInvalid, func() error { return put("a/b", "", "") }},
		{"relative to default", ErrInvalid, func() error { return put("e", ".m.rule.message", "") }},
		{"relative to missing", ErrNotFound, func() error { return put("e", "zzz", "") }},
		{"missing pattern", ErrInvalid, func() error { return u.Put(KindContent, "e", NewRule{Actions: json.RawMessage(`[]`)}, "", "") }},
		{"bad actions", ErrInvalid, func() error { return u.Put(KindRoom, "!r:x", NewRule{Actions: json.RawMessage(`[1]`)}, "", "") }},
		{"delete default", ErrInvalid, func() error { return u.Delete(KindOverride, ".m.rule.master") }},
		{"delete missing", ErrNotFound, func() error { return u.Delete(KindContent, "zzz") }},
		{"enable missing default", ErrNotFound, func() error { return u.SetEnabled(alice, KindContent, ".m.rule.nope", true) }},
	} {
		if err := tc.fn(); err == nil || !errorsIs(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
	if err := u.SetActions(alice, KindUnderride, ".m.rule.message", json.RawMessage(`["dont_notify"]`)); err != nil {
		t.Fatal(err)
	}
	eff := u.Effective(alice)
	r := eff.Find(KindUnderride, ".m.rule.message")
	if b, _ := json.Marshal(r.Actions); string(b) != `["dont_notify"]` {
		t.Fatalf("historical action not kept verbatim: %s", b)
	}
	if res := Compile(eff).Evaluate(ev(t, msg("hello there", "")), &Room{MemberCount: 5}, ""); res.RuleID != ".m.rule.message" || res.Notify || res.Highlight {
		t.Fatalf("dont_notify must mean no notification: %+v", res)
	}
	got := Compile(u.Effective(alice)).Evaluate(ev(t, msg("the b thing", "")), &Room{MemberCount: 5}, "")
	if got.RuleID != "b" || !got.Highlight {
		t.Fatalf("content rule: %+v", got)
	}
	b, _ := json.Marshal(u)
	u2, err := ParseUserRules(b)
	if err != nil || len(u2.Effective(alice).Content) != 4 || u2.Effective(alice).Content[0].Kind != KindContent {
		t.Fatalf("round trip: %v", err)
	}
}

// TestNewEventOfMatchesNewEvent: an event prepared from its fields and
// content is the one the whole event's JSON flattens to.
func TestNewEventOfMatchesNewEvent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       Fields
		content string
	}{
		{"message", Fields{Type: "m.room.message", Sender: "@bob:hs", RoomID: "!r:hs", EventID: "$e"},
			`{"msgtype":"m.text","body":"Hello Rex","m.mentions":{"user_ids":["@a:hs",5,{"x":1}],"room":true}}`},
		{"state, empty key", Fields{Type: "m.room.name", StateKey: ptr(""), Sender: "@bob:hs", RoomID: "!r:hs", EventID: "$e"},
			`{"name":"Surgery"}`},
		{"member", Fields{Type: "m.room.member", StateKey: ptr("@a:hs"), Sender: "@bob:hs", RoomID: "!r:hs", EventID: "$e"},
			`{"membership":"invite","displayname":null,"n":12345678901234567890}`},
		{"dotted keys", Fields{Type: "x.y", Sender: "@bob:hs", RoomID: "!r:hs", EventID: "$e"},
			`{"a.b":{"c\\d":"v"},"list":[]}`},
		{"content null", Fields{Type: "x", Sender: "@b:hs", RoomID: "!r:hs", EventID: "$e"}, `null`},
		{"content absent", Fields{Type: "x", Sender: "@b:hs", RoomID: "!r:hs", EventID: "$e"}, ``},
		{"content an array", Fields{Type: "x", Sender: "@b:hs", RoomID: "!r:hs", EventID: "$e"}, `["a",1]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole := map[string]any{"type": tc.f.Type, "sender": tc.f.Sender, "room_id": tc.f.RoomID, "event_id": tc.f.EventID}
			if tc.f.StateKey != nil {
				whole["state_key"] = *tc.f.StateKey
			}
			content := json.RawMessage(tc.content)
			if tc.content == "" {
				content = nil
			}
			whole["content"] = content
			js, err := json.Marshal(whole)
			if err != nil {
				t.Fatal(err)
			}
			want := ev(t, string(js))
			got, err := NewEventOf(tc.f, content)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("from fields %+v\nfrom JSON   %+v", got, want)
			}
		})
	}
	if _, err := NewEventOf(Fields{Type: "x"}, json.RawMessage(`{"body":`)); err == nil {
		t.Fatal("truncated content accepted")
	}
}

func ptr(s string) *string { return &s }

func BenchmarkEvaluateDefaultRules(b *testing.B) {
	e := Compile((&UserRules{}).Effective(alice))
	js := []byte(msg("good morning, could someone check the x-ray for Rex?", `,"m.mentions":{"user_ids":["@carol:example.org"]}`))
	room := &Room{MemberCount: 12}
	for b.Loop() {
		evt, err := NewEvent(js)
		if err != nil {
			b.Fatal(err)
		}
		if !e.Evaluate(evt, room, "Alice").Notify {
			b.Fatal("no notify")
		}
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// BenchmarkEvaluatePerMember is the cost per additional member: the event
// is flattened once, then evaluated.
func BenchmarkEvaluatePerMember(b *testing.B) {
	e := Compile((&UserRules{}).Effective(alice))
	evt := ev(b, msg("good morning, could someone check the x-ray for Rex?", `,"m.mentions":{"user_ids":["@carol:example.org"]}`))
	room := &Room{MemberCount: 12}
	for b.Loop() {
		if !e.Evaluate(evt, room, "Alice").Notify {
			b.Fatal("no notify")
		}
	}
}

// BenchmarkPrepareEvent: the notifications consumer's old way (encode the
// event's fields and content, then decode the whole event, as NewEvent
// here does) against NewEventOf.
func BenchmarkPrepareEvent(b *testing.B) {
	f := Fields{Type: "m.room.message", Sender: "@bob:example.org", RoomID: "!r:example.org", EventID: "$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}
	content := json.RawMessage(`{"msgtype":"m.text","body":"good morning, could someone check the x-ray for Rex?","m.mentions":{"user_ids":["@carol:example.org"]}}`)
	b.Run("encode_then_decode", func(b *testing.B) {
		for b.Loop() {
			js, err := json.Marshal(map[string]any{"type": f.Type, "sender": f.Sender, "room_id": f.RoomID, "event_id": f.EventID, "content": content})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := NewEvent(js); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("from_fields", func(b *testing.B) {
		for b.Loop() {
			if _, err := NewEventOf(f, content); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzNewEventOf: event content is untrusted input (clients and other
// servers write it). Preparing it never panics; content that is one JSON
// value flattens as the whole event's JSON does.
func FuzzNewEventOf(f *testing.F) {
	for _, c := range []string{`{"body":"hi","m.mentions":{"user_ids":["@a:hs"]}}`, `null`, `[1,"a",{"b":2}]`,
		`{"a.b":{"c\\d":1e400}}`, `{"x":`, `"s"`, ``} {
		f.Add([]byte(c))
	}
	fields := Fields{Type: "m.room.message", StateKey: ptr(""), Sender: "@b:hs", RoomID: "!r:hs", EventID: "$e"}
	f.Fuzz(func(t *testing.T, content []byte) {
		got, err := NewEventOf(fields, content)
		if err != nil || !json.Valid(content) {
			return
		}
		whole := fmt.Sprintf(`{"type":%q,"state_key":"","sender":%q,"room_id":%q,"event_id":%q,"content":%s}`,
			fields.Type, fields.Sender, fields.RoomID, fields.EventID, content)
		want, err := NewEvent([]byte(whole))
		if err != nil {
			t.Fatalf("whole event of valid content %q: %v", content, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("content %q: from fields %+v, whole event %+v", content, got, want)
		}
	})
}
