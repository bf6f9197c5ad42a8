package roomserver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Event is a stored room event as the rest of the server sees it.
type Event struct {
	EventID        string
	RoomID         string
	Type           string
	StateKey       *string // nil for message events
	Sender         string
	Content        json.RawMessage // {} once redacted (minus what the room version keeps)
	OriginServerTS int64
	// Redacts is the target of an m.room.redaction, wherever the room
	// version keeps it (top level before v11, content from v11).
	Redacts string
	// Position is the global stream position: every event with a lower
	// position was committed no later than this one.
	Position int64
	Depth    int64
	// RedactedBy is the position of the redaction applied to this event
	// (0: not redacted).
	RedactedBy int64
	// Replaces, for a state event, is the position of the event it replaced
	// in the room state (0: none) — the source of unsigned.prev_content.
	Replaces int64
	// JSON is the full federation-format PDU.
	JSON []byte

	roomNID    int64
	stateGroup int64
}

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// Redacted reports whether a redaction has been applied.
func (e *Event) Redacted() bool { return e.RedactedBy != 0 }

func (s *Service) roomIDFor(ctx context.Context, nid int64) (string, error) {
	if v, ok := s.roomIDs.Load(nid); ok {
		return v.(string), nil
	}
	row, _, err := s.store.RoomByNID(ctx, nid)
	if err != nil {
		return "", fmt.Errorf("room %d: %w", nid, err)
	}
	s.roomIDs.Store(nid, row.RoomID)
	return row.RoomID, nil
}

func (s *Service) toEvent(ctx context.Context, se storage.StoredEvent) (*Event, error) {
	roomID, err := s.roomIDFor(ctx, se.RoomNID)
	if err != nil {
		return nil, err
	}
	f := pduFields(se.JSON, se.Type == "m.room.redaction")
	content := json.RawMessage(`{}`)
	if f.content.IsObject() {
		content = subslice(se.JSON, f.content)
	}
	e := &Event{
		EventID: se.EventID, RoomID: roomID, Type: se.Type, StateKey: se.StateKey, Sender: se.Sender,
		Content: content, OriginServerTS: f.ts.Int(), Position: se.NID, Depth: se.Depth,
		RedactedBy: se.RedactedByNID, Replaces: se.ReplacesNID, JSON: se.JSON,
		roomNID: se.RoomNID, stateGroup: se.StateGroup,
	}
	if se.Type == "m.room.redaction" {
		// Clone: the strings gjson returns share the PDU's memory.
		e.Redacts = strings.Clone(f.redacts.Str)
		if e.Redacts == "" {
			e.Redacts = strings.Clone(f.content.Get("redacts").Str)
		}
	}
	return e, nil
}

// subslice returns r's bytes as a slice of pdu, the JSON r was parsed
// from, capped so an append cannot write into the rest of the PDU; a copy
// when r carries no usable position.
func subslice(pdu []byte, r gjson.Result) json.RawMessage {
	if i, j := r.Index, r.Index+len(r.Raw); r.Index > 0 && j <= len(pdu) && string(pdu[i:j]) == r.Raw {
		return pdu[i:j:j]
	}
	return json.RawMessage(r.Raw)
}

// pduTop is what toEvent reads from a PDU's top level.
type pduTop struct {
	content, ts, redacts gjson.Result
}

// pduFields reads content, origin_server_ts and (when asked) redacts in
// one pass over the PDU's top level, stopping as soon as it has them.
// Every event a sync or a page returns goes through here: one gjson.Get per
// key rescans the PDU from its start, and looking for redacts, which only
// redactions have, scanned every other event to its end.
//
// The PDU is parsed in place (gjson.ParseBytes would copy it first): the
// results share its memory, so callers copy what they keep or, like
// subslice, keep a capped slice of the PDU itself, which is never
// modified once read.
func pduFields(pdu []byte, wantRedacts bool) pduTop {
	var f pduTop
	if len(pdu) == 0 {
		return f
	}
	var haveContent, haveTS, haveRedacts bool
	gjson.Parse(unsafe.String(&pdu[0], len(pdu))).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content":
			if !haveContent {
				f.content, haveContent = v, true
			}
		case "origin_server_ts":
			if !haveTS {
				f.ts, haveTS = v, true
			}
		case "redacts":
			if !haveRedacts {
				f.redacts, haveRedacts = v, true
			}
		}
		return !(haveContent && haveTS && (haveRedacts || !wantRedacts))
	})
	return f
}

func (s *Service) toEvents(ctx context.Context, stored []storage.StoredEvent) ([]*Event, error) {
	out := make([]*Event, 0, len(stored))
	for _, se := range stored {
		e, err := s.toEvent(ctx, se)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ClientEvent is the client-server API's format of a room event
// ("ClientEvent" in the spec).
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	// Redacts is repeated at the top level for m.room.redaction in every
	// room version, for clients written before v11.
	Redacts  string    `json:"redacts,omitempty"`
	Unsigned *Unsigned `json:"unsigned,omitempty"`
}

// Unsigned is the server-added data of a ClientEvent.
type Unsigned struct {
	Age             int64           `json:"age"`
	TransactionID   string          `json:"transaction_id,omitempty"`
	PrevContent     json.RawMessage `json:"prev_content,omitempty"`
	PrevSender      string          `json:"prev_sender,omitempty"`
	ReplacesState   string          `json:"replaces_state,omitempty"`
	RedactedBecause *ClientEvent    `json:"redacted_because,omitempty"`
	// Relations are the bundled aggregations (relations.go).
	Relations *Relations `json:"m.relations,omitempty"`
}

// Viewer is who a ClientEvent is rendered for: transaction_id is only
// shown to the device that sent the event.
type Viewer struct {
	UserID   string
	DeviceID string
	// Ignored users' children are left out of bundled aggregations.
	Ignored map[string]bool
}

// ClientEvents renders events for a viewer, filling unsigned: age,
// transaction_id, prev_content/replaces_state, redacted_because and the
// bundled aggregations (m.relations, relations.go). It does not apply
// history visibility (see Visible).
func (s *Service) ClientEvents(ctx context.Context, events []*Event, viewer Viewer) ([]ClientEvent, error) {
	var extra []int64
	var own []int64
	for _, e := range events {
		if e.Replaces != 0 {
			extra = append(extra, e.Replaces)
		}
		if e.RedactedBy != 0 {
			extra = append(extra, e.RedactedBy)
		}
		if e.Sender == viewer.UserID {
			own = append(own, e.Position)
		}
	}
	related := map[int64]*Event{}
	if len(extra) > 0 {
		stored, err := s.store.EventsByNID(ctx, extra)
		if err != nil {
			return nil, err
		}
		evs, err := s.toEvents(ctx, stored)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			related[e.Position] = e
		}
	}
	txns := map[int64]string{}
	if len(own) > 0 && viewer.DeviceID != "" {
		var err error
		if txns, err = s.store.TxnIDsForEvents(ctx, viewer.UserID, viewer.DeviceID, own); err != nil {
			return nil, err
		}
	}
	now := s.cfg.Now().UnixMilli()
	out := make([]ClientEvent, len(events))
	for i, e := range events {
		ce := e.client()
		u := &Unsigned{Age: max(0, now-e.OriginServerTS), TransactionID: txns[e.Position]}
		if p := related[e.Replaces]; p != nil && e.Replaces != 0 {
			u.PrevContent, u.PrevSender, u.ReplacesState = p.Content, p.Sender, p.EventID
		}
		if r := related[e.RedactedBy]; r != nil && e.RedactedBy != 0 {
			rc := r.client()
			rc.Unsigned = &Unsigned{Age: max(0, now-r.OriginServerTS)}
			u.RedactedBecause = &rc
		}
		ce.Unsigned = u
		out[i] = ce
	}
	if err := s.bundle(ctx, events, out, viewer, false); err != nil {
		return nil, fmt.Errorf("bundle aggregations: %w", err)
	}
	return out, nil
}

func (e *Event) client() ClientEvent {
	ce := ClientEvent{
		Content: e.Content, EventID: e.EventID, OriginServerTS: e.OriginServerTS, RoomID: e.RoomID,
		Sender: e.Sender, StateKey: e.StateKey, Type: e.Type,
	}
	if e.Type == "m.room.redaction" && e.Redacts != "" {
		ce.Redacts = e.Redacts
		// Older room versions keep redacts at the top level only; newer
		// clients look in content (rooms/v11, "Moving the redacts property").
		if !gjson.GetBytes(e.Content, "redacts").Exists() {
			var c map[string]json.RawMessage
			if json.Unmarshal(e.Content, &c) == nil {
				if c == nil {
					c = map[string]json.RawMessage{}
				}
				c["redacts"], _ = json.Marshal(e.Redacts)
				ce.Content, _ = json.Marshal(c)
			}
		}
	}
	return ce
}

// notFound is the error for unknown or invisible rooms and events; the two
// are indistinguishable on purpose.
func notFound(what string) error { return apierr.NotFound(what + " not found") }
