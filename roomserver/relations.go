package roomserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Event relationships ("Forming relationships between events"): the
// roomserver records each event's m.relates_to with the event (one
// event_relations row, same transaction) and bundles the aggregations of
// children into unsigned."m.relations" when events are rendered
// (ClientEvents), batched for the whole response.

// Relationship types this server aggregates or validates.
const (
	RelThread     = "m.thread"
	RelReplace    = "m.replace"
	RelReference  = "m.reference"
	RelAnnotation = "m.annotation"
)

// relationOf reads an event's m.relates_to. nil when it has no rel_type
// (a rich reply is not a relationship), when it is malformed, or when it
// breaks a rule the event alone shows (the spec: such relationships are
// ignored): an edit that is a state event or lacks m.new_content (only
// checkable in cleartext; an encrypted edit carries it in the ciphertext),
// an annotation without a key.
func relationOf(typ string, stateKey *string, content []byte) *storage.Relation {
	rel := gjson.GetBytes(content, `m\.relates_to`)
	if !rel.IsObject() {
		return nil
	}
	relType, target := rel.Get("rel_type"), rel.Get("event_id")
	if relType.Type != gjson.String || relType.Str == "" || len(relType.Str) > maxIDBytes ||
		target.Type != gjson.String || !strings.HasPrefix(target.Str, "$") || len(target.Str) > maxIDBytes {
		return nil
	}
	r := &storage.Relation{RelType: relType.Str, TargetID: target.Str}
	switch r.RelType {
	case RelReplace:
		if stateKey != nil {
			return nil
		}
		if typ != "m.room.encrypted" && !gjson.GetBytes(content, `m\.new_content`).IsObject() {
			return nil
		}
	case RelAnnotation:
		key := rel.Get("key")
		if key.Type != gjson.String || key.Str == "" {
			return nil
		}
		r.Key = key.Str
	}
	return r
}

// checkRelation applies the server-side rules for a relationship a local
// client sends. A parent in another room makes the relationship invalid:
// it is dropped (nil) and the event is stored as a plain event. A thread
// may not start from an event that is itself a child of a relationship:
// 400 M_UNKNOWN (threading, "Validation of m.thread relationships"; no
// specific code exists). A second annotation by the same sender with the
// same type and key is refused with 400 M_DUPLICATE_ANNOTATION (event
// annotations, "Avoiding duplicate annotations"). An unknown parent is
// kept: it may arrive later.
func (s *Service) checkRelation(ctx context.Context, roomNID int64, sender, typ string, rel *storage.Relation) (*storage.Relation, error) {
	if rel == nil {
		return nil, nil
	}
	if rel.RelType == RelAnnotation {
		dup, err := s.relations().HasAnnotation(ctx, rel.TargetID, sender, typ, rel.Key)
		if err != nil {
			return nil, err
		}
		if dup {
			return nil, apierr.New(400, "M_DUPLICATE_ANNOTATION", "you already sent this annotation")
		}
	}
	parent, err := s.store.EventByID(ctx, rel.TargetID)
	if errors.Is(err, storage.ErrNotFound) {
		return rel, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read relation parent: %w", err)
	}
	if parent.RoomNID != roomNID {
		return nil, nil
	}
	if rel.RelType == RelThread {
		if rt := gjson.GetBytes(parent.JSON, `content.m\.relates_to.rel_type`); rt.Exists() {
			return nil, apierr.New(400, "M_UNKNOWN", "cannot start a thread from an event with a relation")
		}
	}
	return rel, nil
}

// Relations is unsigned."m.relations": the bundled aggregations of an
// event's children. Annotations are not bundled (current spec).
type Relations struct {
	Replace   *ClientEvent    `json:"m.replace,omitempty"`
	Thread    *ThreadSummary  `json:"m.thread,omitempty"`
	Reference *ReferenceChunk `json:"m.reference,omitempty"`
}

// ThreadSummary is the m.thread aggregation of a thread root.
type ThreadSummary struct {
	LatestEvent             *ClientEvent `json:"latest_event"`
	Count                   int64        `json:"count"`
	CurrentUserParticipated bool         `json:"current_user_participated"`
}

// ReferenceChunk is the m.reference aggregation.
type ReferenceChunk struct {
	Chunk []EventRef `json:"chunk"`
}

// EventRef names an event.
type EventRef struct {
	EventID string `json:"event_id"`
}

func (s *Service) relations() *storage.Relations { return storage.NewRelations(s.db) }

// bundle fills unsigned."m.relations" of out (rendered from events, same
// order). Queries per call: one summary of all kinds for every parent,
// then only for kinds present: the edits' candidates, the references, one
// read of the events to embed, and one nested bundle (the edits of the
// threads' latest events). State events get no bundle (the spec's
// warning); a redacted event gets no m.replace.
func (s *Service) bundle(ctx context.Context, events []*Event, out []ClientEvent, viewer Viewer, nested bool) error {
	var ids []string
	byID := map[string]int{}
	for i, e := range events {
		if e.IsState() || out[i].Unsigned == nil {
			continue
		}
		if _, dup := byID[e.EventID]; !dup {
			byID[e.EventID] = i
			ids = append(ids, e.EventID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var ignored []string
	for u, on := range viewer.Ignored {
		if on {
			ignored = append(ignored, u)
		}
	}
	slices.Sort(ignored)
	kinds := []string{RelReplace, RelReference}
	if !nested {
		kinds = append(kinds, RelThread)
	}
	sums, err := s.relations().Summaries(ctx, ids, kinds, viewer.UserID, ignored)
	if err != nil {
		return err
	}
	if len(sums) == 0 {
		return nil
	}
	rels := map[string]*Relations{}
	relsOf := func(id string) *Relations {
		if r := rels[id]; r != nil {
			return r
		}
		r := &Relations{}
		rels[id] = r
		return r
	}
	var editTargets, refTargets []string
	var embed []int64
	threadLatest := map[string]int64{}
	for _, sm := range sums {
		parent := events[byID[sm.TargetID]]
		switch sm.RelType {
		case RelReplace:
			if !parent.Redacted() {
				editTargets = append(editTargets, sm.TargetID)
			}
		case RelReference:
			refTargets = append(refTargets, sm.TargetID)
		case RelThread:
			relsOf(sm.TargetID).Thread = &ThreadSummary{Count: sm.Count,
				CurrentUserParticipated: sm.ByViewer || parent.Sender == viewer.UserID}
			threadLatest[sm.TargetID] = sm.Latest
			embed = append(embed, sm.Latest)
		}
	}
	editOf := map[string]int64{}
	if len(editTargets) > 0 {
		edits, err := s.relations().ChildrenOf(ctx, editTargets, RelReplace, nil)
		if err != nil {
			return err
		}
		best := map[string]storage.Child{}
		for _, c := range edits {
			parent := events[byID[c.TargetID]]
			if !validEdit(parent, c) {
				continue
			}
			if b, ok := best[c.TargetID]; !ok || cmp.Or(cmp.Compare(c.OriginTS, b.OriginTS), strings.Compare(c.EventID, b.EventID)) > 0 {
				best[c.TargetID] = c
			}
		}
		for id, c := range best {
			editOf[id] = c.NID
			embed = append(embed, c.NID)
		}
	}
	if len(refTargets) > 0 {
		refs, err := s.relations().ChildrenOf(ctx, refTargets, RelReference, ignored)
		if err != nil {
			return err
		}
		for _, c := range refs {
			r := relsOf(c.TargetID)
			if r.Reference == nil {
				r.Reference = &ReferenceChunk{}
			}
			r.Reference.Chunk = append(r.Reference.Chunk, EventRef{EventID: c.EventID})
		}
	}
	if len(embed) > 0 {
		rendered, err := s.embedded(ctx, embed, viewer)
		if err != nil {
			return err
		}
		for id, nid := range editOf {
			if ce := rendered[nid]; ce != nil {
				relsOf(id).Replace = ce
			}
		}
		for id, nid := range threadLatest {
			relsOf(id).Thread.LatestEvent = rendered[nid]
		}
	}
	for id, r := range rels {
		if r.Thread != nil && r.Thread.LatestEvent == nil {
			r.Thread = nil // the latest reply vanished meanwhile; no partial summary
		}
		if r.Replace != nil || r.Thread != nil || r.Reference != nil {
			out[byID[id]].Unsigned.Relations = r
		}
	}
	return nil
}

// validEdit applies "Validity of replacement events" to a candidate: same
// sender and type as the original, and the original neither a state event
// nor itself an edit. (Same room holds by construction; m.new_content and
// the edit not being a state event were checked when it was stored.)
func validEdit(original *Event, edit storage.Child) bool {
	if original.IsState() || edit.Sender != original.Sender || edit.Type != original.Type {
		return false
	}
	return gjson.GetBytes(original.Content, `m\.relates_to.rel_type`).Str != RelReplace
}

// embedded renders the events to embed in bundles by position, each with
// its own edits bundled (one level: an edit's or a reply's own thread
// cannot exist, as threads do not nest).
func (s *Service) embedded(ctx context.Context, nids []int64, viewer Viewer) (map[int64]*ClientEvent, error) {
	slices.Sort(nids)
	nids = slices.Compact(nids)
	stored, err := s.store.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	evs, err := s.toEvents(ctx, stored)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UnixMilli()
	out := make([]ClientEvent, len(evs))
	for i, e := range evs {
		out[i] = e.client()
		out[i].Unsigned = &Unsigned{Age: max(0, now-e.OriginServerTS)}
	}
	if err := s.bundle(ctx, evs, out, viewer, true); err != nil {
		return nil, err
	}
	m := make(map[int64]*ClientEvent, len(evs))
	for i, e := range evs {
		m[e.Position] = &out[i]
	}
	return m, nil
}

// threadHops bounds the walk from an event to its thread ("Threaded read
// receipts" recommends at most 3 hops).
const threadHops = 3

// ThreadOf is the thread an event belongs to ("Threaded read receipts"):
// the root of its m.thread relationship, or of the first m.thread found
// following its other relationships (a reaction to a threaded reply is in
// that thread), up to threadHops hops; "main" otherwise (thread roots and
// events related to a root by other relationships included).
func (s *Service) ThreadOf(ctx context.Context, ev *Event) (string, error) {
	content := []byte(ev.Content)
	for hop := 0; hop < threadHops; hop++ {
		rel := gjson.GetManyBytes(content, `m\.relates_to.rel_type`, `m\.relates_to.event_id`)
		if rel[0].Str == "" || rel[1].Str == "" {
			return "main", nil
		}
		if rel[0].Str == RelThread {
			return rel[1].Str, nil
		}
		parent, err := s.store.EventByID(ctx, rel[1].Str)
		if errors.Is(err, storage.ErrNotFound) {
			return "main", nil
		}
		if err != nil {
			return "", fmt.Errorf("read related event: %w", err)
		}
		if parent.RoomNID != ev.roomNID {
			return "main", nil
		}
		content = []byte(gjson.GetBytes(parent.JSON, "content").Raw)
	}
	return "main", nil
}
