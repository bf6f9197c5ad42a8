// Package pushrules owns push-rule evaluation, pure and without storage:
// the rule and action types with their JSON form, the spec's server-default
// rule set (v1.19, which no longer has the legacy body-matching mention
// rules), a user's ruleset merged over the defaults, and evaluating one
// event for one user. Glob patterns are compiled once per pattern and shared
// by every user and event (see glob.go); an event is flattened once and then
// evaluated for each member.
package pushrules

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Kinds of rules, in evaluation order.
const (
	KindOverride  = "override"
	KindContent   = "content"
	KindRoom      = "room"
	KindSender    = "sender"
	KindUnderride = "underride"
)

// Kinds lists the rule kinds in the order they are checked.
var Kinds = []string{KindOverride, KindContent, KindRoom, KindSender, KindUnderride}

// ValidKind reports whether k is a rule kind.
func ValidKind(k string) bool {
	for _, v := range Kinds {
		if v == k {
			return true
		}
	}
	return false
}

// Condition kinds.
const (
	CondEventMatch            = "event_match"
	CondEventPropertyIs       = "event_property_is"
	CondEventPropertyContains = "event_property_contains"
	CondContainsDisplayName   = "contains_display_name"
	CondRoomMemberCount       = "room_member_count"
	CondSenderNotifPermission = "sender_notification_permission"
)

// Condition is one push condition. Unknown kinds are kept (so a client's
// rule round-trips) and never match, as the spec requires.
type Condition struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key,omitempty"`
	Pattern *string         `json:"pattern,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Is      string          `json:"is,omitempty"`
}

// Action is one push action: "notify", a set_tweak, or an unknown action
// kept verbatim. The historical dont_notify and coalesce are kept verbatim
// too and, like every unknown action, mean nothing to evaluation: the spec
// says servers MUST ignore them ("for instance" by stripping them), and
// giving back what a client stored lets older clients that still write
// ["dont_notify"] read their muted rules back unchanged.
type Action struct {
	Notify bool
	Tweak  string          // set_tweak name ("" when not a tweak)
	Value  json.RawMessage // the tweak's value; nil when absent
	Raw    json.RawMessage // an unknown action, verbatim
}

// MarshalJSON renders the action in the spec's form.
func (a Action) MarshalJSON() ([]byte, error) {
	switch {
	case a.Notify:
		return []byte(`"notify"`), nil
	case a.Tweak != "":
		m := map[string]json.RawMessage{}
		name, _ := json.Marshal(a.Tweak)
		m["set_tweak"] = name
		if a.Value != nil {
			m["value"] = a.Value
		}
		return json.Marshal(m)
	default:
		return a.Raw, nil
	}
}

// ParseActions parses an actions array. An action that is neither a string nor an object with a string set_tweak is
// an error.
func ParseActions(raw json.RawMessage) ([]Action, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("actions must be an array")
	}
	out := make([]Action, 0, len(items))
	for _, it := range items {
		it = bytes.TrimSpace(it)
		var s string
		if json.Unmarshal(it, &s) == nil {
			switch s {
			case "notify":
				out = append(out, Action{Notify: true})
			default:
				out = append(out, Action{Raw: append(json.RawMessage(nil), it...)})
			}
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(it, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("an action must be a string or an object")
		}
		tw, ok := obj["set_tweak"]
		if !ok {
			out = append(out, Action{Raw: append(json.RawMessage(nil), it...)})
			continue
		}
		var name string
		if err := json.Unmarshal(tw, &name); err != nil || name == "" {
			return nil, fmt.Errorf("set_tweak must be a non-empty string")
		}
		a := Action{Tweak: name}
		if v, ok := obj["value"]; ok {
			a.Value = append(json.RawMessage(nil), v...)
		}
		out = append(out, a)
	}
	return out, nil
}

// UnmarshalJSON parses one action (used when decoding stored rules).
func (a *Action) UnmarshalJSON(b []byte) error {
	acts, err := ParseActions(append(append([]byte{'['}, b...), ']'))
	if err != nil {
		return err
	}
	*a = acts[0]
	return nil
}

// Rule is one push rule. Kind is not part of its JSON (the ruleset's key
// says it) but decides which fields it renders.
type Rule struct {
	Kind       string      `json:"-"`
	RuleID     string      `json:"rule_id"`
	Default    bool        `json:"default"`
	Enabled    bool        `json:"enabled"`
	Actions    []Action    `json:"actions"`
	Conditions []Condition `json:"conditions,omitempty"`
	Pattern    *string     `json:"pattern,omitempty"`
}

// MarshalJSON renders conditions (possibly empty) for override and
// underride rules and pattern for content rules, as the spec's PushRule
// schema describes.
func (r Rule) MarshalJSON() ([]byte, error) {
	type plain struct {
		RuleID     string       `json:"rule_id"`
		Default    bool         `json:"default"`
		Enabled    bool         `json:"enabled"`
		Actions    []Action     `json:"actions"`
		Conditions *[]Condition `json:"conditions,omitempty"`
		Pattern    *string      `json:"pattern,omitempty"`
	}
	p := plain{RuleID: r.RuleID, Default: r.Default, Enabled: r.Enabled, Actions: r.Actions}
	if p.Actions == nil {
		p.Actions = []Action{}
	}
	switch r.Kind {
	case KindOverride, KindUnderride:
		c := r.Conditions
		if c == nil {
			c = []Condition{}
		}
		p.Conditions = &c
	case KindContent:
		p.Pattern = r.Pattern
	}
	return json.Marshal(p)
}

// Ruleset is a user's rules by kind, each list in priority order.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// List returns the rules of a kind (nil for an unknown kind).
func (rs *Ruleset) List(kind string) *[]Rule {
	switch kind {
	case KindOverride:
		return &rs.Override
	case KindContent:
		return &rs.Content
	case KindRoom:
		return &rs.Room
	case KindSender:
		return &rs.Sender
	case KindUnderride:
		return &rs.Underride
	}
	return nil
}

// Find returns the rule of a kind with that ID, or nil.
func (rs *Ruleset) Find(kind, ruleID string) *Rule {
	l := rs.List(kind)
	if l == nil {
		return nil
	}
	for i := range *l {
		if (*l)[i].RuleID == ruleID {
			return &(*l)[i]
		}
	}
	return nil
}

// MarshalJSON renders every kind as an array (empty, never null), as
// clients expect.
func (rs Ruleset) MarshalJSON() ([]byte, error) {
	type plain Ruleset
	p := plain(rs)
	for _, l := range []*[]Rule{&p.Override, &p.Content, &p.Room, &p.Sender, &p.Underride} {
		if *l == nil {
			*l = []Rule{}
		}
	}
	return json.Marshal(p)
}
