package syncapi

import (
	"context"
	"encoding/json"
	"time"

	"myelin/internal/apierr"
)

// Request is one GET /sync, parsed at the HTTP edge.
type Request struct {
	UserID   string
	DeviceID string
	// Since is the next_batch of an earlier response; "" for an initial
	// sync.
	Since string
	// Filter is a filter ID or inline filter JSON ("" for none).
	Filter        string
	FullState     bool
	SetPresence   string // "", online, unavailable or offline
	Timeout       time.Duration
	UseStateAfter bool
}

// Response is the /sync response. Every section is present (empty when
// there is nothing to say), which is what clients handle best.
type Response struct {
	NextBatch                    string         `json:"next_batch"`
	Rooms                        Rooms          `json:"rooms"`
	Presence                     EventBatch     `json:"presence"`
	AccountData                  EventBatch     `json:"account_data"`
	ToDevice                     EventBatch     `json:"to_device"`
	DeviceLists                  DeviceLists    `json:"device_lists"`
	DeviceOneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	DeviceUnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// EventBatch is a list of events; Events is never null.
type EventBatch struct {
	Events []json.RawMessage `json:"events"`
}

// Rooms are the per-room updates by membership.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
	Knock  map[string]*KnockedRoom `json:"knock"`
}

// JoinedRoom is a joined room's update.
type JoinedRoom struct {
	Summary                   *Summary                      `json:"summary,omitempty"`
	State                     *EventBatch                   `json:"state,omitempty"`
	StateAfter                *EventBatch                   `json:"state_after,omitempty"`
	Timeline                  Timeline                      `json:"timeline"`
	Ephemeral                 EventBatch                    `json:"ephemeral"`
	AccountData               EventBatch                    `json:"account_data"`
	UnreadNotifications       NotificationCounts            `json:"unread_notifications"`
	UnreadThreadNotifications map[string]NotificationCounts `json:"unread_thread_notifications,omitempty"`
}

// LeftRoom is the update of a room the user left or was banned from.
type LeftRoom struct {
	State       *EventBatch `json:"state,omitempty"`
	StateAfter  *EventBatch `json:"state_after,omitempty"`
	Timeline    Timeline    `json:"timeline"`
	AccountData EventBatch  `json:"account_data"`
}

// InvitedRoom carries the stripped state of a room the user is invited to.
type InvitedRoom struct {
	InviteState EventBatch `json:"invite_state"`
}

// KnockedRoom carries the stripped state of a room the user knocked on.
type KnockedRoom struct {
	KnockState EventBatch `json:"knock_state"`
}

// Timeline is a room's new events.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch,omitempty"`
}

// Summary is the room summary.
type Summary struct {
	Heroes             []string `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int     `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int     `json:"m.invited_member_count,omitempty"`
}

// NotificationCounts are unread notification counts.
type NotificationCounts struct {
	HighlightCount    int64 `json:"highlight_count"`
	NotificationCount int64 `json:"notification_count"`
}

// DeviceLists are the end-to-end device-list changes.
type DeviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

func newResponse(next Token) *Response {
	return &Response{
		NextBatch: next.String(),
		Rooms: Rooms{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{},
			Leave: map[string]*LeftRoom{}, Knock: map[string]*KnockedRoom{}},
		Presence:                     EventBatch{Events: []json.RawMessage{}},
		AccountData:                  EventBatch{Events: []json.RawMessage{}},
		ToDevice:                     EventBatch{Events: []json.RawMessage{}},
		DeviceLists:                  DeviceLists{Changed: []string{}, Left: []string{}},
		DeviceOneTimeKeysCount:       map[string]int{},
		DeviceUnusedFallbackKeyTypes: []string{},
	}
}

// empty reports whether the response carries nothing for the client, so a
// long-poll keeps waiting. Key counts are always present and do not count.
func (r *Response) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 && len(r.Rooms.Knock) == 0 &&
		len(r.Presence.Events) == 0 && len(r.AccountData.Events) == 0 && len(r.ToDevice.Events) == 0 &&
		len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0
}

// Sync is GET /sync. An initial sync (no since) or full_state returns at
// once. An incremental sync returns as soon as there is something to say,
// or after the timeout with empty sections: it waits on the roomserver's
// Notifier (room events) and on the user's hub channel (everything else),
// with no polling interval.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	switch req.SetPresence {
	case "", presenceOnline, presenceUnavailable, presenceOffline:
	default:
		return nil, apierr.InvalidParam("set_presence must be online, unavailable or offline")
	}
	if req.Timeout < 0 {
		return nil, apierr.InvalidParam("timeout must not be negative")
	}
	filter, err := s.resolveFilter(ctx, req.UserID, req.Filter)
	if err != nil {
		return nil, err
	}
	var since *Token
	if req.Since != "" {
		t, err := ParseToken(req.Since)
		if err != nil {
			return nil, err
		}
		since = &t
	}
	done := s.presence.syncStarted(ctx, req.UserID, req.SetPresence)
	defer done()

	timeout := min(req.Timeout, s.opts.MaxTimeout)
	if since == nil || req.FullState || s.closed.Load() {
		timeout = 0
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for {
		// Channels first, positions second: a change committed after the
		// positions were read closes a channel already held.
		userCh, release := s.hub.watch(req.UserID)
		evPos, evCh := s.rooms.Notifier().Changed()
		cur := s.current(evPos)
		if timeout == 0 || !since.sameAs(cur) {
			resp, err := s.build(ctx, req, filter, since, cur)
			if err != nil || timeout == 0 || !resp.empty() {
				release()
				return resp, err
			}
		}
		select {
		case <-userCh:
		case <-evCh:
		case <-expired:
			release()
			return s.build(ctx, req, filter, since, s.current(s.rooms.Notifier().Position()))
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
		release()
		if s.closed.Load() {
			return s.build(ctx, req, filter, since, s.current(s.rooms.Notifier().Position()))
		}
	}
}
