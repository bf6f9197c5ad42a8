package pusher

import (
	"encoding/json"
	"fmt"
)

// notifyPath is the only path a pusher URL may have (Push Gateway API:
// POST /_matrix/push/v1/notify).
const notifyPath = "/_matrix/push/v1/notify"

// formatEventIDOnly is the pusher data format that sends no event details.
const formatEventIDOnly = "event_id_only"

// eventInfo is what a notification tells a gateway about its event.
type eventInfo struct {
	EventID, RoomID, Type, Sender string
	StateKey                      *string
	Content                       json.RawMessage
	// From the room state at the event:
	SenderDisplayName, RoomName, RoomAlias string
}

// device is the pusher a request goes to.
type device struct {
	AppID, PushKey string
	Data           json.RawMessage // the pusher's data object, url included
	CreatedTS      int64           // ms
}

// The request body, field for field as the Push Gateway API names them.
type notifyRequest struct {
	Notification notification `json:"notification"`
}

type notification struct {
	EventID           string          `json:"event_id"`
	RoomID            string          `json:"room_id"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	RoomAlias         string          `json:"room_alias,omitempty"`
	UserIsTarget      *bool           `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            map[string]any  `json:"counts"`
	Devices           []deviceJSON    `json:"devices"`
}

type deviceJSON struct {
	AppID     string                     `json:"app_id"`
	PushKey   string                     `json:"pushkey"`
	PushKeyTS int64                      `json:"pushkey_ts"`
	Data      map[string]json.RawMessage `json:"data"`
	Tweaks    map[string]any             `json:"tweaks"`
}

// pusherData splits a pusher's data object into its URL, its format and
// what the gateway is sent: the whole object minus url (the spec: "Servers
// MUST forward the entire content including format and any custom keys
// but excluding url").
func pusherData(raw json.RawMessage) (url, format string, forward map[string]json.RawMessage, err error) {
	if err := json.Unmarshal(raw, &forward); err != nil || forward == nil {
		return "", "", nil, fmt.Errorf("pusher data is not an object")
	}
	if u, ok := forward["url"]; ok {
		if err := json.Unmarshal(u, &url); err != nil {
			return "", "", nil, fmt.Errorf("pusher data.url is not a string")
		}
	}
	if f, ok := forward["format"]; ok {
		_ = json.Unmarshal(f, &format) // a non-string format is forwarded, and means the full format
	}
	delete(forward, "url")
	return url, format, forward, nil
}

// tweaks collects the set_tweak actions of a notification's matched rule;
// a tweak without a value is true (the spec defines that for highlight;
// other tweaks are passed through the same way).
func tweaks(actions json.RawMessage) map[string]any {
	out := map[string]any{}
	var list []json.RawMessage
	if json.Unmarshal(actions, &list) != nil {
		return out
	}
	for _, a := range list {
		var obj map[string]json.RawMessage
		if json.Unmarshal(a, &obj) != nil {
			continue // "notify" and the historical string actions
		}
		var name string
		if json.Unmarshal(obj["set_tweak"], &name) != nil || name == "" {
			continue
		}
		var v any = true
		if raw, ok := obj["value"]; ok {
			if json.Unmarshal(raw, &v) != nil {
				continue
			}
		}
		out[name] = v
	}
	return out
}

// priority is "high" for what should alert at once — a highlight, a rule
// that plays a sound, or an encrypted event (whose content the server
// cannot judge; the client decides after decrypting) — and "low" for the
// rest, which gateways may deliver in a battery-friendly way.
func priority(eventType string, tw map[string]any) string {
	if eventType == "m.room.encrypted" {
		return "high"
	}
	if h, ok := tw["highlight"].(bool); ok && h {
		return "high"
	}
	if _, ok := tw["sound"]; ok {
		return "high"
	}
	return "low"
}

// buildNotify shapes the /notify body for one notification of userID to
// one pusher. unread is the user's current unread count across rooms.
func buildNotify(ev eventInfo, userID string, d device, actions json.RawMessage, unread int64) ([]byte, error) {
	_, format, forward, err := pusherData(d.Data)
	if err != nil {
		return nil, err
	}
	tw := tweaks(actions)
	n := notification{
		EventID: ev.EventID,
		RoomID:  ev.RoomID,
		Prio:    priority(ev.Type, tw),
		// Counts whose value is zero are omitted (spec).
		Counts: map[string]any{},
		Devices: []deviceJSON{{AppID: d.AppID, PushKey: d.PushKey, PushKeyTS: d.CreatedTS / 1000,
			Data: forward, Tweaks: tw}},
	}
	if unread > 0 {
		n.Counts["unread"] = unread
	}
	if format != formatEventIDOnly {
		n.Type, n.Sender = ev.Type, ev.Sender
		n.SenderDisplayName, n.RoomName, n.RoomAlias = ev.SenderDisplayName, ev.RoomName, ev.RoomAlias
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			target := *ev.StateKey == userID
			n.UserIsTarget = &target
		}
		// The content, as the spec asks; a redacted event's emptied
		// content ({}) says nothing, so it is left out.
		if len(ev.Content) > 0 && string(ev.Content) != "{}" {
			n.Content = ev.Content
		}
	}
	return json.Marshal(notifyRequest{Notification: n})
}
