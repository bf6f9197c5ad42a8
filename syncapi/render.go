package syncapi

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/tidwall/gjson"

	"myelin/roomserver"
)

// unsigned adds membership (the viewer's membership at the event, spec
// v1.11) to the roomserver's unsigned data.
type unsigned struct {
	*roomserver.Unsigned
	Membership string `json:"membership,omitempty"`
}

// eventFormat renders events as a filter asks: the client format (with or
// without room_id), or the federation format (the stored PDU), then
// event_fields.
type eventFormat struct {
	federation bool
	withRoomID bool
	fields     [][]string // event_fields, split into paths
}

func newEventFormat(f *Filter, withRoomID bool) eventFormat {
	ef := eventFormat{withRoomID: withRoomID}
	if f != nil {
		ef.federation = f.EventFormat == "federation"
		for _, p := range f.EventFields {
			ef.fields = append(ef.fields, splitFieldPath(p))
		}
	}
	return ef
}

// render formats one event; membership is the viewer's membership at it
// ("" leaves it out).
func (ef eventFormat) render(ce roomserver.ClientEvent, e *roomserver.Event, membership string) json.RawMessage {
	var raw []byte
	if ef.federation {
		raw = e.JSON
	} else {
		raw = appendClientEvent(make([]byte, 0, 160+len(ce.Content)), ce, membership, ef.withRoomID)
	}
	if len(ef.fields) > 0 {
		raw = project(raw, ef.fields)
	}
	return raw
}

// splitFieldPath splits a dot-separated property path; "\." is a literal
// dot and "\\" a literal backslash (appendices, "Dot-separated property
// paths").
func splitFieldPath(p string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && (p[i+1] == '.' || p[i+1] == '\\'):
			cur.WriteByte(p[i+1])
			i++
		case p[i] == '.':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(out, cur.String())
}

// project keeps only the listed paths of a JSON object. Paths that are
// absent are skipped; a path through a non-object stops there.
func project(raw []byte, paths [][]string) []byte {
	var src map[string]json.RawMessage
	if json.Unmarshal(raw, &src) != nil {
		return raw
	}
	dst := map[string]any{}
	for _, p := range paths {
		copyPath(src, dst, p)
	}
	out, err := json.Marshal(dst)
	if err != nil {
		return raw
	}
	return out
}

func copyPath(src map[string]json.RawMessage, dst map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	var sub map[string]json.RawMessage
	if json.Unmarshal(v, &sub) != nil {
		return
	}
	next, ok := dst[path[0]].(map[string]any)
	if !ok {
		if _, taken := dst[path[0]]; taken {
			return // the whole object is already included
		}
		next = map[string]any{}
	}
	copyPath(sub, next, path[1:])
	if len(next) > 0 {
		dst[path[0]] = next
	}
}

// strippedEvent is a stripped state event: only content, sender,
// state_key and type ("Stripped state").
type strippedEvent struct {
	Content  json.RawMessage `json:"content"`
	Sender   string          `json:"sender"`
	StateKey string          `json:"state_key"`
	Type     string          `json:"type"`
}

func stripped(pdu []byte, typ, stateKey, sender string) json.RawMessage {
	content := json.RawMessage(`{}`)
	if c := gjson.GetBytes(pdu, "content"); c.IsObject() {
		content = json.RawMessage(c.Raw)
	}
	b, _ := json.Marshal(strippedEvent{Content: content, Sender: sender, StateKey: stateKey, Type: typ})
	return b
}

// accountDataEvent is an account-data entry as an event.
func accountDataEvent(typ string, content []byte) json.RawMessage {
	if !json.Valid(content) || !bytes.HasPrefix(bytes.TrimSpace(content), []byte("{")) {
		content = []byte(`{}`)
	}
	b, _ := json.Marshal(struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}{typ, content})
	return b
}
