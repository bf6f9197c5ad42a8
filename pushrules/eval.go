package pushrules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Event is an event prepared for evaluation: flattened once into its
// dot-separated property paths, then evaluated for every member.
type Event struct {
	flat      map[string]any   // path → string, json.Number, bool or nil
	arrays    map[string][]any // path → the array's scalar elements
	body      string
	bodyLower string
	hasBody   bool
	lower     map[string]string // lower-cased string values, computed lazily per event
}

// Fields are the top-level properties of an event that rules can read,
// besides its content.
type Fields struct {
	Type     string
	StateKey *string // nil for a non-state event
	Sender   string
	RoomID   string
	EventID  string
}

// NewEventOf prepares an event of those fields and content for evaluation:
// flattened once into its dot-separated property paths (client and
// federation formats agree on these fields). Only the content is decoded:
// the notifications consumer used to encode the whole event for a decoder
// of whole events, and that round trip was 3% of the send path's CPU.
func NewEventOf(f Fields, content json.RawMessage) (*Event, error) {
	var c any
	if len(content) > 0 {
		if err := decodeNumbers(content, &c); err != nil {
			return nil, fmt.Errorf("decode content: %w", err)
		}
	}
	ev := newEvent()
	ev.flat["type"], ev.flat["sender"], ev.flat["room_id"], ev.flat["event_id"] = f.Type, f.Sender, f.RoomID, f.EventID
	if f.StateKey != nil {
		ev.flat["state_key"] = *f.StateKey
	}
	ev.add("content", c)
	ev.finish()
	return ev, nil
}

// decodeNumbers decodes JSON keeping numbers as json.Number, so integer
// comparisons (event_property_is) see the value as written.
func decodeNumbers(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	return dec.Decode(v)
}

func newEvent() *Event {
	return &Event{flat: map[string]any{}, arrays: map[string][]any{}, lower: map[string]string{}}
}

// finish caches the body, which the default content rules all read.
func (ev *Event) finish() {
	if b, ok := ev.flat["content.body"].(string); ok {
		ev.body, ev.bodyLower, ev.hasBody = b, strings.ToLower(b), true
	}
}

// keyEscaper escapes a key for a dot-separated path. Built once: clients
// put dotted keys such as "m.mentions" in most messages, and building a
// Replacer per key was two thirds of preparing such an event's memory.
var keyEscaper = strings.NewReplacer(`\`, `\\`, `.`, `\.`)

func escapeKey(k string) string {
	if !strings.ContainsAny(k, `.\`) {
		return k
	}
	return keyEscaper.Replace(k)
}

func (ev *Event) walk(prefix string, m map[string]any) {
	for k, v := range m {
		path := escapeKey(k)
		if prefix != "" {
			path = prefix + "." + path
		}
		ev.add(path, v)
	}
}

// add records the value at path: objects are walked, arrays keep their
// scalar elements, scalars are stored as they are.
func (ev *Event) add(path string, v any) {
	switch v := v.(type) {
	case map[string]any:
		ev.walk(path, v)
	case []any:
		var scalars []any
		for _, e := range v {
			switch e.(type) {
			case string, json.Number, bool, nil:
				scalars = append(scalars, e)
			}
		}
		ev.arrays[path] = scalars
	default:
		ev.flat[path] = v
	}
}

// String returns a string property (ok false when absent or not a string).
func (ev *Event) String(path string) (string, bool) {
	s, ok := ev.flat[path].(string)
	return s, ok
}

func (ev *Event) lowerOf(path, s string) string {
	if l, ok := ev.lower[path]; ok {
		return l
	}
	l := strings.ToLower(s)
	ev.lower[path] = l
	return l
}

// Room is what evaluation needs to know about the room at the event.
type Room struct {
	MemberCount int
	// SenderPower is the sender's power level; NotificationLevels the
	// power_levels' notifications object (absent keys default to 50).
	SenderPower        int64
	NotificationLevels map[string]int64
}

// Result is the outcome for one user.
type Result struct {
	Matched bool
	Kind    string
	RuleID  string
	Actions []Action
	// ActionsJSON is Actions encoded, once per compiled rule: the
	// notifications consumer stores it for every notified member of every
	// event, and encoding it per member was 4% of the send path's CPU.
	ActionsJSON json.RawMessage
	Notify      bool
	Highlight   bool
}

type compiledCond struct {
	kind    string
	key     string
	m       matcher
	value   any // event_property_is/contains: decoded scalar
	valueOK bool
	cmp     string // room_member_count: ==, <, >, <=, >=
	n       int
	bad     bool // unknown or malformed: never matches
}

type compiledRule struct {
	rule        Rule
	actionsJSON json.RawMessage
	conds       []compiledCond
	// content/room/sender rules
	m      matcher
	target string
}

// Evaluator is a user's effective ruleset compiled for evaluation. It is
// immutable and safe for concurrent use; build it once per ruleset
// change, not per event.
type Evaluator struct {
	rules []compiledRule // all kinds, in evaluation order
}

// Compile prepares a ruleset.
func Compile(rs Ruleset) *Evaluator {
	e := &Evaluator{}
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			r.Kind = k
			cr := compiledRule{rule: r}
			// Actions were decoded from JSON (or are the built-in
			// defaults), so they always encode.
			cr.actionsJSON, _ = json.Marshal(r.Actions)
			switch k {
			case KindOverride, KindUnderride:
				for _, c := range r.Conditions {
					cr.conds = append(cr.conds, compileCond(c))
				}
			case KindContent:
				if r.Pattern != nil {
					cr.m = newMatcher(*r.Pattern, true)
				} else {
					cr.conds = []compiledCond{{bad: true}}
				}
			default:
				cr.target = r.RuleID
			}
			e.rules = append(e.rules, cr)
		}
	}
	return e
}

func decodeScalar(raw json.RawMessage) (any, bool) {
	if raw == nil {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, false
	}
	switch v.(type) {
	case string, json.Number, bool, nil:
		return v, true
	}
	return nil, false
}

func compileCond(c Condition) compiledCond {
	cc := compiledCond{kind: c.Kind, key: c.Key}
	switch c.Kind {
	case CondEventMatch:
		if c.Key == "" || c.Pattern == nil {
			cc.bad = true
			break
		}
		cc.m = newMatcher(*c.Pattern, c.Key == "content.body")
	case CondEventPropertyIs, CondEventPropertyContains:
		cc.value, cc.valueOK = decodeScalar(c.Value)
		cc.bad = c.Key == "" || !cc.valueOK
	case CondContainsDisplayName:
	case CondRoomMemberCount:
		is := c.Is
		cc.cmp = "=="
		for _, p := range []string{"==", "<=", ">=", "<", ">"} {
			if strings.HasPrefix(is, p) {
				cc.cmp, is = p, is[len(p):]
				break
			}
		}
		n, err := strconv.Atoi(is)
		cc.n, cc.bad = n, err != nil
	case CondSenderNotifPermission:
		cc.bad = c.Key == ""
	default:
		cc.bad = true
	}
	return cc
}

func sameScalar(a, b any) bool {
	switch a := a.(type) {
	case string:
		s, ok := b.(string)
		return ok && s == a
	case bool:
		v, ok := b.(bool)
		return ok && v == a
	case json.Number:
		v, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, e1 := a.Int64()
		y, e2 := v.Int64()
		return e1 == nil && e2 == nil && x == y
	case nil:
		return b == nil
	}
	return false
}

func (c *compiledCond) holds(ev *Event, room *Room, displayName string) bool {
	if c.bad {
		return false
	}
	switch c.kind {
	case CondEventMatch:
		s, ok := ev.String(c.key)
		if !ok {
			return false
		}
		return c.m.match(s, ev.lowerOf(c.key, s))
	case CondEventPropertyIs:
		v, ok := ev.flat[c.key]
		return ok && sameScalar(c.value, v)
	case CondEventPropertyContains:
		arr, ok := ev.arrays[c.key]
		if !ok {
			return false
		}
		for _, v := range arr {
			if sameScalar(c.value, v) {
				return true
			}
		}
		return false
	case CondContainsDisplayName:
		return ev.hasBody && displayName != "" && containsWord(ev.bodyLower, strings.ToLower(displayName))
	case CondRoomMemberCount:
		n := room.MemberCount
		switch c.cmp {
		case "<":
			return n < c.n
		case ">":
			return n > c.n
		case "<=":
			return n <= c.n
		case ">=":
			return n >= c.n
		}
		return n == c.n
	case CondSenderNotifPermission:
		need, ok := room.NotificationLevels[c.key]
		if !ok {
			need = 50
		}
		return room.SenderPower >= need
	}
	return false
}

// Evaluate finds the first enabled rule that matches ev for the user with
// displayName in the room, and what its actions mean.
func (e *Evaluator) Evaluate(ev *Event, room *Room, displayName string) Result {
	for i := range e.rules {
		r := &e.rules[i]
		if !r.rule.Enabled || !r.matches(ev, room, displayName) {
			continue
		}
		res := Result{Matched: true, Kind: r.rule.Kind, RuleID: r.rule.RuleID, Actions: r.rule.Actions, ActionsJSON: r.actionsJSON}
		for _, a := range r.rule.Actions {
			switch {
			case a.Notify:
				res.Notify = true
			case a.Tweak == "highlight":
				res.Highlight = a.Value == nil || string(bytes.TrimSpace(a.Value)) == "true"
			}
		}
		return res
	}
	return Result{}
}

func (r *compiledRule) matches(ev *Event, room *Room, displayName string) bool {
	switch r.rule.Kind {
	case KindContent:
		if len(r.conds) > 0 || !ev.hasBody {
			return false
		}
		return r.m.match(ev.body, ev.bodyLower)
	case KindRoom:
		s, _ := ev.String("room_id")
		return s == r.target
	case KindSender:
		s, _ := ev.String("sender")
		return s == r.target
	}
	for i := range r.conds {
		if !r.conds[i].holds(ev, room, displayName) {
			return false
		}
	}
	return true
}
