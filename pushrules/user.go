package pushrules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors of the rule-editing operations; the HTTP layer maps them to the
// spec's error codes.
var (
	ErrNotFound = errors.New("push rule not found")
	ErrInvalid  = errors.New("invalid push rule")
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// DefaultOverride is a user's change to a server-default rule: only
// enabled and actions may change.
type DefaultOverride struct {
	Enabled *bool    `json:"enabled,omitempty"`
	Actions []Action `json:"actions,omitempty"`
	// HasActions distinguishes "actions set to []" from "not changed".
	HasActions bool `json:"has_actions,omitempty"`
}

// UserRules is what a user changed: their own rules (per kind, in
// priority order) and their changes to server-default rules keyed by
// "kind/rule_id". It is what storage keeps, as JSON.
type UserRules struct {
	Rules    Ruleset                    `json:"rules"`
	Defaults map[string]DefaultOverride `json:"defaults,omitempty"`
}

// ParseUserRules decodes stored user rules (empty input: no changes).
func ParseUserRules(b []byte) (*UserRules, error) {
	u := &UserRules{}
	if len(b) == 0 {
		return u, nil
	}
	if err := json.Unmarshal(b, u); err != nil {
		return nil, fmt.Errorf("decode push rules: %w", err)
	}
	for _, k := range Kinds {
		l := u.Rules.List(k)
		for i := range *l {
			(*l)[i].Kind = k
		}
	}
	return u, nil
}

// Effective merges the user's rules over the server defaults for userID.
// User-defined rules of a kind outrank the defaults of that kind, except
// .m.rule.master, which stays first.
func (u *UserRules) Effective(userID string) Ruleset {
	d := Defaults(userID)
	apply := func(rules []Rule) []Rule {
		for i := range rules {
			if o, ok := u.Defaults[rules[i].Kind+"/"+rules[i].RuleID]; ok {
				if o.Enabled != nil {
					rules[i].Enabled = *o.Enabled
				}
				if o.HasActions {
					rules[i].Actions = slices.Clone(o.Actions)
				}
			}
		}
		return rules
	}
	d.Override = apply(d.Override)
	d.Underride = apply(d.Underride)
	out := Ruleset{
		Content: slices.Clone(u.Rules.Content),
		Room:    slices.Clone(u.Rules.Room),
		Sender:  slices.Clone(u.Rules.Sender),
	}
	out.Override = append(append([]Rule{d.Override[0]}, u.Rules.Override...), d.Override[1:]...)
	out.Underride = append(slices.Clone(u.Rules.Underride), d.Underride...)
	return out
}

// NewRule is the body of PUT /pushrules/global/{kind}/{ruleId}.
type NewRule struct {
	Actions    json.RawMessage `json:"actions"`
	Conditions []Condition     `json:"conditions"`
	Pattern    *string         `json:"pattern"`
}

// Put adds or replaces a user-defined rule. before/after name user rules
// of the same kind the rule is placed relative to.
func (u *UserRules) Put(kind, ruleID string, nr NewRule, before, after string) error {
	if !ValidKind(kind) {
		return fmt.Errorf("%w: unknown kind", ErrNotFound)
	}
	if ruleID == "" || IsDefaultID(ruleID) || strings.ContainsAny(ruleID, `/\`) {
		return invalid("rule IDs may not be empty, start with '.' or contain '/' or '\\'")
	}
	if nr.Actions == nil {
		return invalid("actions is required")
	}
	acts, err := ParseActions(nr.Actions)
	if err != nil {
		return invalid("%s", err.Error())
	}
	r := Rule{Kind: kind, RuleID: ruleID, Enabled: true, Actions: acts}
	switch kind {
	case KindOverride, KindUnderride:
		for _, c := range nr.Conditions {
			if c.Kind == "" {
				return invalid("every condition needs a kind")
			}
		}
		r.Conditions = nr.Conditions
	case KindContent:
		if nr.Pattern == nil {
			return invalid("content rules need a pattern")
		}
		r.Pattern = nr.Pattern
	case KindRoom, KindSender:
		// The rule ID is the room or user it applies to.
	}
	l := u.Rules.List(kind)
	idx := slices.IndexFunc(*l, func(x Rule) bool { return x.RuleID == ruleID })
	if idx >= 0 && before == "" && after == "" {
		(*l)[idx] = r // updated in place, keeping its priority
		return nil
	}
	rest := slices.DeleteFunc(slices.Clone(*l), func(x Rule) bool { return x.RuleID == ruleID })
	pos := 0 // a new rule is the most important user rule of its kind
	if before != "" || after != "" {
		anchor, shift := before, 0
		if before == "" {
			anchor, shift = after, 1
		}
		if IsDefaultID(anchor) {
			return invalid("rules cannot be placed relative to a server-default rule")
		}
		i := slices.IndexFunc(rest, func(x Rule) bool { return x.RuleID == anchor })
		if i < 0 {
			return fmt.Errorf("%w: before/after rule", ErrNotFound)
		}
		pos = i + shift
	}
	*l = slices.Insert(rest, pos, r)
	return nil
}

// Delete removes a user-defined rule.
func (u *UserRules) Delete(kind, ruleID string) error {
	if IsDefaultID(ruleID) {
		return invalid("server-default rules cannot be deleted")
	}
	l := u.Rules.List(kind)
	if l == nil {
		return ErrNotFound
	}
	n := len(*l)
	*l = slices.DeleteFunc(*l, func(x Rule) bool { return x.RuleID == ruleID })
	if len(*l) == n {
		return ErrNotFound
	}
	return nil
}

// SetEnabled enables or disables a rule (user-defined or default).
func (u *UserRules) SetEnabled(userID, kind, ruleID string, enabled bool) error {
	return u.modify(userID, kind, ruleID, func(r *Rule, o *DefaultOverride) {
		if r != nil {
			r.Enabled = enabled
		} else {
			o.Enabled = &enabled
		}
	})
}

// SetActions replaces a rule's actions (user-defined or default).
func (u *UserRules) SetActions(userID, kind, ruleID string, raw json.RawMessage) error {
	acts, err := ParseActions(raw)
	if err != nil {
		return invalid("%s", err.Error())
	}
	return u.modify(userID, kind, ruleID, func(r *Rule, o *DefaultOverride) {
		if r != nil {
			r.Actions = acts
		} else {
			o.Actions, o.HasActions = acts, true
		}
	})
}

func (u *UserRules) modify(userID, kind, ruleID string, fn func(*Rule, *DefaultOverride)) error {
	if !ValidKind(kind) {
		return ErrNotFound
	}
	if !IsDefaultID(ruleID) {
		r := u.Rules.Find(kind, ruleID)
		if r == nil {
			return ErrNotFound
		}
		fn(r, nil)
		return nil
	}
	d := Defaults(userID)
	if d.Find(kind, ruleID) == nil {
		return ErrNotFound
	}
	if u.Defaults == nil {
		u.Defaults = map[string]DefaultOverride{}
	}
	o := u.Defaults[kind+"/"+ruleID]
	fn(nil, &o)
	u.Defaults[kind+"/"+ruleID] = o
	return nil
}
