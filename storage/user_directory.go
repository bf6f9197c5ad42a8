package storage

import (
	"context"
	"fmt"
)

// The user directory (POST /user_directory/search) is answered from the
// membership tables rather than a separate index: who a user may find is
// exactly who shares a room with them or sits in a public room, and both are
// current-state facts these tables already hold.

// SharedRoomUsers lists the users, other than userID, joined to a room
// userID is joined to.
func (r *Rooms) SharedRoomUsers(ctx context.Context, userID string) ([]string, error) {
	return r.userIDs(ctx, `SELECT DISTINCT o.user_id FROM room_members me JOIN room_members o ON o.room_nid = me.room_nid
		WHERE me.user_id = $1 AND me.membership = 'join' AND o.membership = 'join' AND o.user_id <> $1 ORDER BY o.user_id`, userID)
}

// JoinedUsersOfRooms lists the users joined to any of the rooms.
func (r *Rooms) JoinedUsersOfRooms(ctx context.Context, roomNIDs []int64) ([]string, error) {
	if len(roomNIDs) == 0 {
		return nil, nil
	}
	args := make([]any, len(roomNIDs))
	for i, n := range roomNIDs {
		args[i] = n
	}
	return r.userIDs(ctx, `SELECT DISTINCT user_id FROM room_members WHERE membership = 'join' AND room_nid IN (`+
		placeholders(1, len(roomNIDs))+`) ORDER BY user_id`, args...)
}

// CurrentStateOfType returns, across all rooms, the current state events of
// one type with an empty state key (e.g. every room's m.room.join_rules).
func (r *Rooms) CurrentStateOfType(ctx context.Context, typ string) ([]StoredEvent, error) {
	evs, err := r.queryEvents(ctx, `SELECT `+prefixed("e.", eventCols)+` FROM current_state cs JOIN events e ON e.event_nid = cs.event_nid
		WHERE cs.type = $1 AND cs.state_key = '' ORDER BY cs.room_nid`, typ)
	if err != nil {
		return nil, fmt.Errorf("read %s of all rooms: %w", typ, err)
	}
	return evs, nil
}

func (r *Rooms) userIDs(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := r.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read directory users: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("read directory users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
