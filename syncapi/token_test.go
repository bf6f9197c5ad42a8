package syncapi

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	cases := []Token{
		{},
		{Events: 120, AccountData: 4, Receipts: 9, Typing: 1718000000000, Presence: 3},
		{Events: 1, Ext: map[string]int64{"d": 7, "td": 12}},
	}
	for _, tok := range cases {
		s := tok.String()
		got, err := ParseToken(s)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", s, err)
		}
		if len(tok.Ext) == 0 {
			tok.Ext = nil
		}
		if !reflect.DeepEqual(got, tok) {
			t.Errorf("round trip %q = %+v, want %+v", s, got, tok)
		}
	}
	if s := (Token{Events: 5, AccountData: 1}).String(); s != "s5_a1_r0_y0_p0" {
		t.Errorf("encoding = %q", s)
	}
}

func TestParseToken(t *testing.T) {
	cases := []struct {
		in   string
		want *Token // nil: invalid
	}{
		{"s5", &Token{Events: 5}},
		{"s5_a2", &Token{Events: 5, AccountData: 2}},
		{"s5_zz9", &Token{Events: 5, Ext: map[string]int64{"zz": 9}}},
		{"", nil},
		{"s", nil},
		{"t5", nil},
		{"s-1", nil},
		{"s+1", nil},
		{"s5_", nil},
		{"s5__a1", nil},
		{"s5_a", nil},
		{"s5_1", nil},
		{"s5_a1_a2", nil},
		{"s5_e3", nil},
		{"s5_A1", nil},
		{"s5_a-1", nil},
		{"s5_a1x", nil},
		{"s99999999999999999999", nil},
	}
	for _, c := range cases {
		got, err := ParseToken(c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("ParseToken(%q) = %+v, want an error", c.in, got)
			} else {
				wantErr(t, err, "M_INVALID_PARAM", 400)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, *c.want) {
			t.Errorf("ParseToken(%q) = %+v, %v; want %+v", c.in, got, err, *c.want)
		}
	}
}

func TestPageTokens(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"t0", 0, true},
		{"t42", 42, true},
		{"s42_a1_r2_y3_p4", 42, true},
		{"t", 0, false},
		{"t-1", 0, false},
		{"x42", 0, false},
		{"42", 0, false},
	}
	for _, c := range cases {
		got, err := parsePageToken(c.in)
		if c.ok != (err == nil) || (c.ok && got != c.want) {
			t.Errorf("parsePageToken(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
	if pageToken(17) != "t17" {
		t.Errorf("pageToken(17) = %q", pageToken(17))
	}
}

func TestSameAs(t *testing.T) {
	a := Token{Events: 1, AccountData: 2, Ext: map[string]int64{"d": 3}}
	cases := []struct {
		cur  Token
		want bool
	}{
		{Token{Events: 1, AccountData: 2, Ext: map[string]int64{"d": 3}}, true},
		{Token{Events: 2, AccountData: 2, Ext: map[string]int64{"d": 3}}, false},
		{Token{Events: 1, AccountData: 2, Ext: map[string]int64{"d": 4}}, false},
		{Token{Events: 1, AccountData: 2, Typing: 1}, false},
	}
	for _, c := range cases {
		if got := a.sameAs(c.cur); got != c.want {
			t.Errorf("sameAs(%+v) = %v", c.cur, got)
		}
	}
}

func TestParseFilter(t *testing.T) {
	cases := []struct {
		name, body string
		code       string // "" valid
	}{
		{"empty", `{}`, ""},
		{"full", `{"event_fields":["content.body"],"event_format":"federation","presence":{"types":["m.presence"],"not_senders":["@a:x"]},
			"account_data":{"limit":3},"room":{"rooms":["!a:x"],"not_rooms":["!b"],"include_leave":true,
			"timeline":{"limit":5,"types":["m.room.*"],"contains_url":true,"lazy_load_members":true},
			"state":{"lazy_load_members":true,"include_redundant_members":true},"ephemeral":{"types":["m.typing"]},
			"account_data":{"not_types":["m.tag"]}}}`, ""},
		{"unknown fields pass", `{"org.example":1,"room":{"x":2}}`, ""},
		{"not json", `{nope`, "M_NOT_JSON"},
		{"not object", `[1]`, "M_BAD_JSON"},
		{"bad format", `{"event_format":"xml"}`, "M_BAD_JSON"},
		{"zero limit", `{"room":{"timeline":{"limit":0}}}`, ""},
		{"negative limit", `{"presence":{"limit":-2}}`, "M_BAD_JSON"},
		{"string limit", `{"room":{"timeline":{"limit":"5"}}}`, "M_BAD_JSON"},
		{"float limit", `{"room":{"timeline":{"limit":1.5}}}`, "M_BAD_JSON"},
		{"room not an ID", `{"room":{"rooms":["general"]}}`, "M_BAD_JSON"},
		{"state room not an ID", `{"room":{"state":{"not_rooms":["#a:x"]}}}`, "M_BAD_JSON"},
		{"sender not a user", `{"room":{"timeline":{"senders":["alice"]}}}`, "M_BAD_JSON"},
		{"types not strings", `{"room":{"timeline":{"types":[1]}}}`, "M_BAD_JSON"},
		{"empty event field", `{"event_fields":[""]}`, "M_BAD_JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFilter([]byte(c.body))
			if c.code == "" {
				if err != nil {
					t.Fatalf("valid filter refused: %v", err)
				}
				return
			}
			wantErr(t, err, c.code, 400)
		})
	}
}

func TestGlobAndEventFilter(t *testing.T) {
	globs := []struct {
		pattern, s string
		want       bool
	}{
		{"m.room.message", "m.room.message", true},
		{"m.room.message", "m.room.messages", false},
		{"m.room.*", "m.room.member", true},
		{"m.room.*", "m.roomx", false},
		{"*", "anything", true},
		{"m.*.member", "m.room.member", true},
		{"m.*.member", "m.room.name", false},
		{"*.member", "m.room.member", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
	}
	for _, g := range globs {
		if got := globMatch(g.pattern, g.s); got != g.want {
			t.Errorf("globMatch(%q, %q) = %v", g.pattern, g.s, got)
		}
	}
	yes, no := true, false
	filters := []struct {
		name   string
		f      *RoomEventFilter
		typ    string
		sender string
		body   string
		want   bool
	}{
		{"nil allows", nil, "m.room.message", "@a:x", `{}`, true},
		{"types", &RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.room.message"}}}, "m.room.member", "@a:x", `{}`, false},
		{"empty types allow nothing", &RoomEventFilter{EventFilter: EventFilter{Types: []string{}}}, "m.room.message", "@a:x", `{}`, false},
		{"not_types wins", &RoomEventFilter{EventFilter: EventFilter{Types: []string{"m.*"}, NotTypes: []string{"m.room.member"}}}, "m.room.member", "@a:x", `{}`, false},
		{"senders", &RoomEventFilter{EventFilter: EventFilter{Senders: []string{"@b:x"}}}, "m.room.message", "@a:x", `{}`, false},
		{"not_senders", &RoomEventFilter{EventFilter: EventFilter{NotSenders: []string{"@a:x"}}}, "m.room.message", "@a:x", `{}`, false},
		{"contains_url true", &RoomEventFilter{ContainsURL: &yes}, "m.room.message", "@a:x", `{"url":"mxc://x/y"}`, true},
		{"contains_url true, none", &RoomEventFilter{ContainsURL: &yes}, "m.room.message", "@a:x", `{"body":"hi"}`, false},
		{"contains_url false", &RoomEventFilter{ContainsURL: &no}, "m.room.message", "@a:x", `{"url":"mxc://x/y"}`, false},
		{"contains_url non-string", &RoomEventFilter{ContainsURL: &yes}, "m.room.message", "@a:x", `{"url":5}`, false},
	}
	for _, c := range filters {
		if got := c.f.allowsEvent(c.typ, c.sender, []byte(c.body)); got != c.want {
			t.Errorf("%s: allowsEvent = %v", c.name, got)
		}
	}
	rf := &RoomEventFilter{Rooms: []string{"!a", "!b"}, NotRooms: []string{"!b"}}
	for room, want := range map[string]bool{"!a": true, "!b": false, "!c": false} {
		if rf.allowsRoom(room) != want {
			t.Errorf("allowsRoom(%s) != %v", room, want)
		}
	}
}

func TestEventFields(t *testing.T) {
	ev := []byte(`{"content":{"body":"hi","m.relates_to":{"rel_type":"x"},"a.b":1},"event_id":"$e","sender":"@a:x","type":"m.room.message","unsigned":{"age":5}}`)
	cases := []struct {
		fields []string
		want   string
	}{
		{[]string{"type", "content"}, `{"content":{"a.b":1,"body":"hi","m.relates_to":{"rel_type":"x"}},"type":"m.room.message"}`},
		{[]string{"content.body", "sender"}, `{"content":{"body":"hi"},"sender":"@a:x"}`},
		{[]string{`content.m\.relates_to.rel_type`}, `{"content":{"m.relates_to":{"rel_type":"x"}}}`},
		{[]string{`content.a\.b`}, `{"content":{"a.b":1}}`},
		{[]string{"content.missing", "nope"}, `{}`},
		{[]string{"type.sub"}, `{}`},
		{[]string{"content", "content.body"}, `{"content":{"a.b":1,"body":"hi","m.relates_to":{"rel_type":"x"}}}`},
	}
	for _, c := range cases {
		var paths [][]string
		for _, f := range c.fields {
			paths = append(paths, splitFieldPath(f))
		}
		got := project(ev, paths)
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal([]byte(c.want), &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("project(%v) = %s, want %s", c.fields, got, c.want)
		}
	}
	if got := splitFieldPath(`a\\.b\.c`); !slices.Equal(got, []string{`a\`, "b.c"}) {
		t.Errorf("splitFieldPath = %q", got)
	}
}
