package roomserver

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/storage"
)

// DirectoryUsers is who userID may find in the user directory: the users
// sharing a joined room with them, and everyone joined to a room whose join
// rule is public or whose history is world_readable (the minimum the spec's
// user directory section requires). userID appears only through the second
// rule: a user in no public room does not find themself. Sorted, no repeats.
func (s *Service) DirectoryUsers(ctx context.Context, userID string) ([]string, error) {
	shared, err := s.store.SharedRoomUsers(ctx, userID)
	if err != nil {
		return nil, err
	}
	open := map[int64]bool{}
	add := func(typ, field, value string) error {
		evs, err := s.store.CurrentStateOfType(ctx, typ)
		if err != nil {
			return err
		}
		for _, se := range evs {
			if contentField(se, field) == value {
				open[se.RoomNID] = true
			}
		}
		return nil
	}
	if err := add(spec.MRoomJoinRules, "join_rule", spec.Public); err != nil {
		return nil, err
	}
	if err := add(spec.MRoomHistoryVisibility, "history_visibility", "world_readable"); err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(open))
	for n := range open {
		nids = append(nids, n)
	}
	public, err := s.store.JoinedUsersOfRooms(ctx, nids)
	if err != nil {
		return nil, err
	}
	out := append(shared, public...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// contentField reads a string field of a stored event's content ("" when
// absent, redacted away, or not a string).
func contentField(se storage.StoredEvent, field string) string {
	var pdu struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if json.Unmarshal(se.JSON, &pdu) != nil {
		return ""
	}
	var v string
	if json.Unmarshal(pdu.Content[field], &v) != nil {
		return ""
	}
	return v
}
