package syncapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"myelin/internal/apierr"
	"myelin/roomserver"
	"myelin/storage"
)

// Receipt types.
const (
	receiptRead        = "m.read"
	receiptReadPrivate = "m.read.private"
	markerFullyRead    = "m.fully_read"
)

// receiptReq is one receipt or marker to set, validated.
type receiptReq struct {
	typ      string
	event    *roomserver.Event
	threadID string
}

// PostReceipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId}.
// threadID nil is unthreaded; m.fully_read sets the read marker (as
// /read_markers does) and takes no thread.
func (s *Service) PostReceipt(ctx context.Context, userID, roomID, receiptType, eventID string, threadID *string) error {
	switch receiptType {
	case receiptRead, receiptReadPrivate, markerFullyRead:
	default:
		return apierr.InvalidParam("receipt type must be m.read, m.read.private or m.fully_read")
	}
	if threadID != nil {
		if *threadID == "" {
			return apierr.InvalidParam("thread_id must be a non-empty string")
		}
		if receiptType == markerFullyRead {
			return apierr.InvalidParam("thread_id cannot be used with m.fully_read")
		}
	}
	if err := s.checkJoined(ctx, roomID, userID); err != nil {
		return err
	}
	ev, err := s.receiptEvent(ctx, roomID, eventID, userID)
	if err != nil {
		return err
	}
	r := receiptReq{typ: receiptType, event: ev}
	if threadID != nil {
		inThread, err := s.rooms.ThreadOf(ctx, ev)
		if err != nil {
			return err
		}
		if err := checkThread(ev, inThread, *threadID); err != nil {
			return err
		}
		r.threadID = *threadID
	}
	return s.setReceipts(ctx, userID, roomID, []receiptReq{r})
}

// ReadMarkers is POST /rooms/{roomId}/read_markers: any of the fully-read
// marker, the m.read and the m.read.private receipt, in one transaction.
func (s *Service) ReadMarkers(ctx context.Context, userID, roomID, fullyRead, read, readPrivate string) error {
	if err := s.checkJoined(ctx, roomID, userID); err != nil {
		return err
	}
	var reqs []receiptReq
	for _, m := range []struct{ typ, id string }{{markerFullyRead, fullyRead}, {receiptRead, read}, {receiptReadPrivate, readPrivate}} {
		if m.id == "" {
			continue
		}
		ev, err := s.receiptEvent(ctx, roomID, m.id, userID)
		if err != nil {
			return err
		}
		reqs = append(reqs, receiptReq{typ: m.typ, event: ev})
	}
	return s.setReceipts(ctx, userID, roomID, reqs)
}

func (s *Service) checkJoined(ctx context.Context, roomID, userID string) error {
	if !validRoomID(roomID) {
		return apierr.InvalidParam("invalid room ID")
	}
	m, err := s.membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m.Membership != "join" {
		return apierr.Forbidden("you are not joined to this room")
	}
	return nil
}

// membership is the user's membership in a room; M_FORBIDDEN for unknown
// rooms (indistinguishable from rooms the user is not in).
func (s *Service) membership(ctx context.Context, roomID, userID string) (storage.RoomMembership, error) {
	m, err := s.store.MembershipIn(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return m, apierr.Forbidden("you are not a member of this room")
	}
	return m, err
}

func (s *Service) receiptEvent(ctx context.Context, roomID, eventID, userID string) (*roomserver.Event, error) {
	if len(eventID) < 2 || eventID[0] != '$' || len(eventID) > 255 {
		return nil, apierr.InvalidParam("invalid event ID")
	}
	return s.rooms.GetEvent(ctx, roomID, eventID, userID)
}

// checkThread enforces that a threaded receipt's event belongs to its
// thread ("Threaded read receipts"): "main" takes events outside any
// thread (thread roots included); a thread root's ID takes the root and
// the events in its thread (inThread, from roomserver.ThreadOf: m.thread
// children and what relates to them).
func checkThread(ev *roomserver.Event, inThread, threadID string) error {
	switch {
	case threadID == "main":
		if inThread != "main" {
			return apierr.InvalidParam("the event is in a thread, not the main timeline")
		}
	case threadID[0] == '$':
		if ev.EventID != threadID && inThread != threadID {
			return apierr.InvalidParam("the event is not in the thread")
		}
	default:
		return apierr.InvalidParam("thread_id must be \"main\" or a thread root's event ID")
	}
	return nil
}

// setReceipts writes receipts and the fully-read marker in one transaction
// and wakes who sees them: the room for m.read, only the user otherwise.
func (s *Service) setReceipts(ctx context.Context, userID, roomID string, reqs []receiptReq) error {
	if len(reqs) == 0 {
		return nil
	}
	public := false
	wrote := false
	ts := s.now().UnixMilli()
	uses := 0
	for _, r := range reqs {
		if r.typ == markerFullyRead {
			uses |= useAccountData
		} else {
			uses |= useReceipts
		}
	}
	err := s.write(ctx, uses, func(tx *sql.Tx, pos streamWrite) error {
		for _, r := range reqs {
			if r.typ == markerFullyRead {
				content, _ := json.Marshal(map[string]string{"event_id": r.event.EventID})
				if err := s.store.PutAccountData(ctx, tx, userID, roomID, markerFullyRead, content, pos.AccountData); err != nil {
					return err
				}
				wrote = true
				continue
			}
			ok, err := s.store.PutReceipt(ctx, tx, storage.Receipt{RoomID: roomID, Type: r.typ, UserID: userID, ThreadID: r.threadID,
				EventID: r.event.EventID, EventPos: r.event.Position, TS: ts, StreamPos: pos.Receipts})
			if err != nil {
				return err
			}
			wrote = wrote || ok
			public = public || (ok && r.typ == receiptRead)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.presence.touch(ctx, userID)
	switch {
	case public:
		s.wakeRoom(ctx, roomID)
	case wrote:
		s.hub.wake(userID)
	}
	return nil
}

// receiptEvents groups receipts into one m.receipt event per room:
// content {event_id: {type: {user: {ts, thread_id?}}}}.
func receiptEvents(rs []storage.Receipt) map[string]json.RawMessage {
	type entry struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id,omitempty"`
	}
	byRoom := map[string]map[string]map[string]map[string]entry{}
	for _, r := range rs {
		room := byRoom[r.RoomID]
		if room == nil {
			room = map[string]map[string]map[string]entry{}
			byRoom[r.RoomID] = room
		}
		ev := room[r.EventID]
		if ev == nil {
			ev = map[string]map[string]entry{}
			room[r.EventID] = ev
		}
		if ev[r.Type] == nil {
			ev[r.Type] = map[string]entry{}
		}
		ev[r.Type][r.UserID] = entry{TS: r.TS, ThreadID: r.ThreadID}
	}
	out := make(map[string]json.RawMessage, len(byRoom))
	for room, content := range byRoom {
		b, _ := json.Marshal(struct {
			Type    string `json:"type"`
			Content any    `json:"content"`
		}{"m.receipt", content})
		out[room] = b
	}
	return out
}
