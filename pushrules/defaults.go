package pushrules

import (
	"encoding/json"
	"strings"
)

// userIDPlaceholder stands for the rule owner's Matrix ID in the default
// rules' definitions, replaced per user.
const userIDPlaceholder = "[the user's Matrix ID]"

// defaultOverride and defaultUnderride are the spec's server-default rules
// (v1.19 "Predefined Rules"), in priority order, exactly as the spec
// defines them. There are no default content, room or sender rules in
// v1.19: the legacy body-matching mention rules were removed in v1.17.
const defaultOverride = `[
 {"rule_id": ".m.rule.master", "default": true, "enabled": false, "conditions": [], "actions": []},
 {"rule_id": ".m.rule.suppress_notices", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}], "actions": []},
 {"rule_id": ".m.rule.invite_for_me", "default": true, "enabled": true,
  "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.room.member"},
                 {"key": "content.membership", "kind": "event_match", "pattern": "invite"},
                 {"key": "state_key", "kind": "event_match", "pattern": "[the user's Matrix ID]"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
 {"rule_id": ".m.rule.member_event", "default": true, "enabled": true,
  "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.room.member"}], "actions": []},
 {"rule_id": ".m.rule.is_user_mention", "default": true, "enabled": true,
  "conditions": [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": "[the user's Matrix ID]"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.is_room_mention", "default": true, "enabled": true,
  "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true},
                 {"kind": "sender_notification_permission", "key": "room"}],
  "actions": ["notify", {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.tombstone", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
                 {"kind": "event_match", "key": "state_key", "pattern": ""}],
  "actions": ["notify", {"set_tweak": "highlight"}]},
 {"rule_id": ".m.rule.reaction", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}], "actions": []},
 {"rule_id": ".m.rule.room.server_acl", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
                 {"kind": "event_match", "key": "state_key", "pattern": ""}], "actions": []},
 {"rule_id": ".m.rule.suppress_edits", "default": true, "enabled": true,
  "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}], "actions": []}
]`

const defaultUnderride = `[
 {"rule_id": ".m.rule.call", "default": true, "enabled": true,
  "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.call.invite"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "ring"}]},
 {"rule_id": ".m.rule.encrypted_room_one_to_one", "default": true, "enabled": true,
  "conditions": [{"kind": "room_member_count", "is": "2"}, {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
 {"rule_id": ".m.rule.room_one_to_one", "default": true, "enabled": true,
  "conditions": [{"kind": "room_member_count", "is": "2"}, {"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
  "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
 {"rule_id": ".m.rule.message", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}], "actions": ["notify"]},
 {"rule_id": ".m.rule.encrypted", "default": true, "enabled": true,
  "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}], "actions": ["notify"]}
]`

// MasterRuleID is the override rule that, enabled, silences everything; it
// outranks even user-defined rules.
const MasterRuleID = ".m.rule.master"

// Defaults returns the server-default rules for userID.
func Defaults(userID string) Ruleset {
	quoted, _ := json.Marshal(userID)
	inner := string(quoted[1 : len(quoted)-1])
	parse := func(kind, src string) []Rule {
		var rules []Rule
		if err := json.Unmarshal([]byte(strings.ReplaceAll(src, userIDPlaceholder, inner)), &rules); err != nil {
			panic("pushrules: bad default rules: " + err.Error()) // a constant: caught by every test
		}
		for i := range rules {
			rules[i].Kind = kind
		}
		return rules
	}
	return Ruleset{Override: parse(KindOverride, defaultOverride), Underride: parse(KindUnderride, defaultUnderride)}
}

// IsDefaultID reports whether a rule ID is reserved for server defaults.
func IsDefaultID(ruleID string) bool { return strings.HasPrefix(ruleID, ".") }
