package syncapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"myelin/roomserver"
)

// A /sync response is mostly events that are already JSON: the content
// read from the stored PDU and the events rendered once by eventFormat.
// encoding/json re-validates and compacts every json.RawMessage it writes,
// and it did so twice per event (rendering the event, then the response),
// which was a sixth of an initial sync's CPU. The encoders here append the
// already-valid parts as they are and leave only the small, irregular
// parts (summaries, counts, unsigned data with relations) to
// encoding/json. Response.MarshalJSON makes json.Marshal use the same
// encoder, so the tests, which decode what json.Marshal produces, check it.

// MarshalJSON encodes the response; see AppendJSON.
func (r *Response) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends the response's JSON encoding to buf. The events are
// copied as they are (they are valid JSON by construction); an HTTP
// handler writes the result directly instead of passing the response to
// json.Marshal, which would scan all of it again.
func (r *Response) AppendJSON(buf []byte) []byte {
	buf = append(buf, `{"next_batch":`...)
	buf = appendString(buf, r.NextBatch)
	buf = append(buf, `,"rooms":{"join":`...)
	buf = appendRoomMap(buf, r.Rooms.Join, (*JoinedRoom).appendJSON)
	buf = append(buf, `,"invite":`...)
	buf = appendRoomMap(buf, r.Rooms.Invite, func(v *InvitedRoom, b []byte) []byte {
		b = append(b, `{"invite_state":`...)
		return append(v.InviteState.appendJSON(b), '}')
	})
	buf = append(buf, `,"leave":`...)
	buf = appendRoomMap(buf, r.Rooms.Leave, (*LeftRoom).appendJSON)
	buf = append(buf, `,"knock":`...)
	buf = appendRoomMap(buf, r.Rooms.Knock, func(v *KnockedRoom, b []byte) []byte {
		b = append(b, `{"knock_state":`...)
		return append(v.KnockState.appendJSON(b), '}')
	})
	buf = append(buf, `},"presence":`...)
	buf = r.Presence.appendJSON(buf)
	buf = append(buf, `,"account_data":`...)
	buf = r.AccountData.appendJSON(buf)
	buf = append(buf, `,"to_device":`...)
	buf = r.ToDevice.appendJSON(buf)
	buf = append(buf, `,"device_lists":`...)
	buf = appendMarshal(buf, r.DeviceLists)
	buf = append(buf, `,"device_one_time_keys_count":`...)
	buf = appendMarshal(buf, r.DeviceOneTimeKeysCount)
	buf = append(buf, `,"device_unused_fallback_key_types":`...)
	buf = appendMarshal(buf, r.DeviceUnusedFallbackKeyTypes)
	return append(buf, '}')
}

// appendRoomMap writes a map of room ID to entry with sorted keys (as
// encoding/json does; a nil map is null, like encoding/json's).
func appendRoomMap[T any](buf []byte, m map[string]*T, enc func(*T, []byte) []byte) []byte {
	if m == nil {
		return append(buf, "null"...)
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	buf = append(buf, '{')
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, id)
		buf = append(buf, ':')
		if v := m[id]; v == nil {
			buf = append(buf, "null"...)
		} else {
			buf = enc(v, buf)
		}
	}
	return append(buf, '}')
}

func (j *JoinedRoom) appendJSON(buf []byte) []byte {
	buf = append(buf, '{')
	if j.Summary != nil {
		buf = append(buf, `"summary":`...)
		buf = appendMarshal(buf, j.Summary)
		buf = append(buf, ',')
	}
	if j.State != nil {
		buf = append(buf, `"state":`...)
		buf = append(j.State.appendJSON(buf), ',')
	}
	if j.StateAfter != nil {
		buf = append(buf, `"state_after":`...)
		buf = append(j.StateAfter.appendJSON(buf), ',')
	}
	buf = append(buf, `"timeline":`...)
	buf = j.Timeline.appendJSON(buf)
	buf = append(buf, `,"ephemeral":`...)
	buf = j.Ephemeral.appendJSON(buf)
	buf = append(buf, `,"account_data":`...)
	buf = j.AccountData.appendJSON(buf)
	buf = append(buf, `,"unread_notifications":`...)
	buf = j.UnreadNotifications.appendJSON(buf)
	if len(j.UnreadThreadNotifications) > 0 {
		buf = append(buf, `,"unread_thread_notifications":`...)
		buf = appendMarshal(buf, j.UnreadThreadNotifications)
	}
	return append(buf, '}')
}

func (l *LeftRoom) appendJSON(buf []byte) []byte {
	buf = append(buf, '{')
	if l.State != nil {
		buf = append(buf, `"state":`...)
		buf = append(l.State.appendJSON(buf), ',')
	}
	if l.StateAfter != nil {
		buf = append(buf, `"state_after":`...)
		buf = append(l.StateAfter.appendJSON(buf), ',')
	}
	buf = append(buf, `"timeline":`...)
	buf = l.Timeline.appendJSON(buf)
	buf = append(buf, `,"account_data":`...)
	buf = l.AccountData.appendJSON(buf)
	return append(buf, '}')
}

func (t *Timeline) appendJSON(buf []byte) []byte {
	buf = append(buf, `{"events":`...)
	buf = appendEvents(buf, t.Events)
	buf = append(buf, `,"limited":`...)
	buf = strconv.AppendBool(buf, t.Limited)
	if t.PrevBatch != "" {
		buf = append(buf, `,"prev_batch":`...)
		buf = appendString(buf, t.PrevBatch)
	}
	return append(buf, '}')
}

func (e *EventBatch) appendJSON(buf []byte) []byte {
	buf = append(buf, `{"events":`...)
	return append(appendEvents(buf, e.Events), '}')
}

func (c NotificationCounts) appendJSON(buf []byte) []byte {
	buf = append(buf, `{"highlight_count":`...)
	buf = strconv.AppendInt(buf, c.HighlightCount, 10)
	buf = append(buf, `,"notification_count":`...)
	buf = strconv.AppendInt(buf, c.NotificationCount, 10)
	return append(buf, '}')
}

// appendEvents writes a list of already-encoded events; a nil list is
// null and an empty event null, as encoding/json writes them.
func appendEvents(buf []byte, evs []json.RawMessage) []byte {
	if evs == nil {
		return append(buf, "null"...)
	}
	buf = append(buf, '[')
	for i, e := range evs {
		if i > 0 {
			buf = append(buf, ',')
		}
		if len(e) == 0 {
			buf = append(buf, "null"...)
			continue
		}
		buf = append(buf, e...)
	}
	return append(buf, ']')
}

// appendMarshal appends encoding/json's encoding of a small value. The
// values passed here (counts, summaries, string lists) cannot fail to
// encode; null stands in if one ever did.
func appendMarshal(buf []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return append(buf, "null"...)
	}
	return append(buf, b...)
}

// appendString appends s as a JSON string. Plain printable ASCII, which
// IDs, types and tokens almost always are, is copied as is; anything else
// goes through encoding/json for its escaping rules.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return appendMarshal(buf, s)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// appendClientEvent writes the client format of an event (the spec's
// ClientEvent, without room_id unless withRoomID) with membership added
// to its unsigned data. Content and prev_content are the stored event's
// JSON, copied as they are.
func appendClientEvent(buf []byte, ce roomserver.ClientEvent, membership string, withRoomID bool) []byte {
	buf = append(buf, `{"content":`...)
	buf = appendRaw(buf, ce.Content)
	buf = append(buf, `,"event_id":`...)
	buf = appendString(buf, ce.EventID)
	buf = append(buf, `,"origin_server_ts":`...)
	buf = strconv.AppendInt(buf, ce.OriginServerTS, 10)
	if withRoomID && ce.RoomID != "" {
		buf = append(buf, `,"room_id":`...)
		buf = appendString(buf, ce.RoomID)
	}
	buf = append(buf, `,"sender":`...)
	buf = appendString(buf, ce.Sender)
	if ce.StateKey != nil {
		buf = append(buf, `,"state_key":`...)
		buf = appendString(buf, *ce.StateKey)
	}
	buf = append(buf, `,"type":`...)
	buf = appendString(buf, ce.Type)
	if ce.Redacts != "" {
		buf = append(buf, `,"redacts":`...)
		buf = appendString(buf, ce.Redacts)
	}
	if ce.Unsigned != nil || membership != "" {
		buf = append(buf, `,"unsigned":`...)
		buf = appendUnsigned(buf, ce.Unsigned, membership)
	}
	return append(buf, '}')
}

// appendUnsigned writes the unsigned data; redacted_because and bundled
// aggregations, which nest whole events and summaries, are rare enough to
// leave to encoding/json.
func appendUnsigned(buf []byte, u *roomserver.Unsigned, membership string) []byte {
	if u != nil && (u.RedactedBecause != nil || u.Relations != nil) {
		return appendMarshal(buf, unsigned{Unsigned: u, Membership: membership})
	}
	buf = append(buf, '{')
	first := true
	key := func(k string) {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, k...)
	}
	if u != nil {
		key(`"age":`)
		buf = strconv.AppendInt(buf, u.Age, 10)
		if u.TransactionID != "" {
			key(`"transaction_id":`)
			buf = appendString(buf, u.TransactionID)
		}
		if len(u.PrevContent) > 0 {
			key(`"prev_content":`)
			buf = appendRaw(buf, u.PrevContent)
		}
		if u.PrevSender != "" {
			key(`"prev_sender":`)
			buf = appendString(buf, u.PrevSender)
		}
		if u.ReplacesState != "" {
			key(`"replaces_state":`)
			buf = appendString(buf, u.ReplacesState)
		}
	}
	if membership != "" {
		key(`"membership":`)
		buf = appendString(buf, membership)
	}
	return append(buf, '}')
}

// appendRaw copies already-encoded JSON; empty is null, as encoding/json
// writes an empty json.RawMessage.
func appendRaw(buf []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(buf, "null"...)
	}
	return append(buf, raw...)
}

// MarshalJSON encodes the page; see AppendJSON.
func (r *MessagesResponse) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends the /messages page's JSON encoding to buf, the events
// copied as rendered. Writing a page through json.Marshal re-scanned every
// event and was a sixth of the server's CPU in back-pagination.
func (r *MessagesResponse) AppendJSON(buf []byte) []byte {
	n := 64 + len(r.Start) + len(r.End)
	for _, e := range r.Chunk {
		n += len(e) + 1
	}
	for _, e := range r.State {
		n += len(e) + 1
	}
	buf = slices.Grow(buf, n)
	buf = append(buf, `{"start":`...)
	buf = appendString(buf, r.Start)
	if r.End != "" {
		buf = append(buf, `,"end":`...)
		buf = appendString(buf, r.End)
	}
	buf = append(buf, `,"chunk":`...)
	buf = appendEvents(buf, r.Chunk)
	if len(r.State) > 0 {
		buf = append(buf, `,"state":`...)
		buf = appendEvents(buf, r.State)
	}
	return append(buf, '}')
}
