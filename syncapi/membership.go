package syncapi

import (
	"context"

	"github.com/tidwall/gjson"

	"myelin/roomserver"
)

// viewerMemberships returns the viewer's membership after each event, for
// unsigned.membership (spec v1.11, "the membership of the user making the
// request at the time of the event"): their current membership for events
// at or after their current membership event in that room (nothing changed
// it since), otherwise read from the state group stored with the event.
// Two queries for all the older events together; none when there are none.
func (s *Service) viewerMemberships(ctx context.Context, viewer string, evs []*roomserver.Event,
	groupOf func(*roomserver.Event) int64, current func(roomID string) (membership string, pos int64)) (map[int64]string, error) {
	out := make(map[int64]string, len(evs))
	var older []*roomserver.Event
	var groups []int64
	for _, e := range evs {
		if m, pos := current(e.RoomID); pos > 0 && e.Position >= pos {
			out[e.Position] = m
			continue
		}
		older = append(older, e)
		groups = append(groups, groupOf(e))
	}
	if len(older) == 0 {
		return out, nil
	}
	state, err := s.store.StateAtGroups(ctx, groups, []string{"m.room.member"}, []string{viewer})
	if err != nil {
		return nil, err
	}
	memberOf := map[int64]int64{} // group → the viewer's member event
	var nids []int64
	for g, entries := range state {
		for _, en := range entries {
			if en.StateKey == viewer {
				memberOf[g] = en.EventNID
				nids = append(nids, en.EventNID)
			}
		}
	}
	rows, err := s.store.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	value := map[int64]string{}
	for _, r := range rows {
		value[r.NID] = gjson.GetBytes(r.JSON, "content.membership").Str
	}
	for _, e := range older {
		m := value[memberOf[groupOf(e)]]
		if m == "" {
			m = "leave"
		}
		out[e.Position] = m
	}
	return out, nil
}
