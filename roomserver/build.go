package roomserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
	"myelin/internal/canonicaljson"
)

// Size limits from the spec ("Size limits", client-server API).
const (
	maxEventBytes = 65536
	maxIDBytes    = 255
)

// proto is an event to build.
type proto struct {
	sender   string
	typ      string
	stateKey *string
	content  json.RawMessage
	redacts  string // m.room.redaction target (top-level before v11, content from v11)
}

// checkContent applies the canonical JSON and size rules to client-supplied
// content before any work is done: M_BAD_JSON or M_TOO_LARGE, nothing
// stored.
func checkContent(typ string, stateKey *string, content json.RawMessage) error {
	if len(content) > maxEventBytes {
		return apierr.TooLarge("event content exceeds 65536 bytes")
	}
	if len(typ) > maxIDBytes {
		return apierr.TooLarge("event type exceeds 255 bytes")
	}
	if stateKey != nil && len(*stateKey) > maxIDBytes {
		return apierr.TooLarge("state_key exceeds 255 bytes")
	}
	if typ == "" {
		return apierr.BadJSON("event type must not be empty")
	}
	if !utf8.ValidString(typ) || (stateKey != nil && !utf8.ValidString(*stateKey)) {
		return apierr.BadJSON("event type and state_key must be valid UTF-8")
	}
	if err := canonicaljson.ValidateObject(content); err != nil {
		return apierr.BadJSON("content is not canonical JSON: " + errReason(err))
	}
	return nil
}

func errReason(err error) string {
	var ce *canonicaljson.Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return "invalid"
}

// build creates, signs and authorises an event on top of the overlay and
// records it there. Errors are *apierr.Error for client mistakes.
func (t *stateTxn) build(p proto, be *builtEvent) (gmsl.PDU, error) {
	if err := checkContent(p.typ, p.stateKey, p.content); err != nil {
		return nil, err
	}
	if t.ver.EventFormat() != gmsl.EventFormatV2 {
		return nil, apierr.New(400, "M_UNSUPPORTED_ROOM_VERSION", "this server cannot build events in this room version")
	}
	pe := &gmsl.ProtoEvent{
		SenderID: p.sender,
		RoomID:   t.id,
		Type:     p.typ,
		StateKey: p.stateKey,
		Content:  spec.RawJSON(p.content),
		Depth:    t.depth + 1,
	}
	if t.extremities != nil {
		pe.PrevEvents = append([]string(nil), t.extremities...)
	} else {
		pe.PrevEvents = []string{}
	}
	if p.redacts != "" && !redactsInContent(t.ver.Version()) {
		pe.Redacts = p.redacts
	}
	eb := t.ver.NewEventBuilderFromProtoEvent(pe)
	if err := eb.AddAuthEvents(t); err != nil {
		var na *gmsl.NotAllowed
		if errors.As(err, &na) {
			return nil, apierr.BadJSON("invalid event content for its type")
		}
		return nil, fmt.Errorf("select auth events: %w", err)
	}
	canon, err := gmsl.CanonicalJSON(p.content)
	if err != nil {
		return nil, apierr.BadJSON("content is not valid JSON")
	}
	pe.AuthEvents = eb.AuthEvents
	now := t.svc.cfg.Now()
	if p.typ == spec.MRoomCreate {
		now = t.svc.createTime(now)
	}
	ev, err := t.buildSigned(pe, canon, now)
	if err != nil {
		return nil, fmt.Errorf("sign event: %w", err)
	}
	if len(ev.JSON()) > maxEventBytes {
		return nil, apierr.TooLarge("event exceeds 65536 bytes")
	}
	if err := authorise(ev, t, nil); err != nil {
		var na *notAllowed
		if errors.As(err, &na) {
			return nil, apierr.Forbidden(na.reason)
		}
		return nil, err
	}
	if ev.Type() == spec.MRoomMember {
		var m struct {
			Membership string `json:"membership"`
		}
		_ = json.Unmarshal(ev.Content(), &m)
		be.membership = m.Membership
	}
	t.apply(ev, be)
	return ev, nil
}

// redactsInContent reports whether the room version keeps m.room.redaction's
// target in content (v11 and later) rather than at the top level.
func redactsInContent(v gmsl.RoomVersion) bool {
	switch v {
	case "1", "2", "3", "4", "5", "6", "7", "8", "9", "10":
		return false
	}
	return true
}
