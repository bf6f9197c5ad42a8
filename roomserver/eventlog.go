package roomserver

import (
	"context"

	"myelin/storage"
)

// EventsFromLog turns rows that another reader read from the event log
// with its own batch queries (syncapi reads many rooms per query) into
// Events, ready for Visible and ClientEvents. roomIDs maps room NIDs the
// caller already read to their IDs (may be nil); others are looked up.
func (s *Service) EventsFromLog(ctx context.Context, rows []storage.StoredEvent, roomIDs map[int64]string) ([]*Event, error) {
	for nid, id := range roomIDs {
		s.roomIDs.Store(nid, id)
	}
	return s.toEvents(ctx, rows)
}
