package e2ee

import (
	"context"
	"sort"
)

// Device-list tracking (spec: "Tracking the device list for a user"): a
// client keeps the device lists of the users it shares rooms with and
// refreshes one when /sync (or /keys/changes) names its user in
// device_lists.changed; it forgets users named in left.
//
// The device-list stream records which local users' identity or
// cross-signing keys changed (key uploads, device deletions, signatures).
// Whether a viewer should hear about a change is decided when the viewer
// reads: the changed user must share a room with the viewer now. Who
// started or stopped sharing a room with the viewer is read from the
// membership events of the same window in the event log, so no fan-out is
// written per change.

// DeviceLists is the device-list stream as syncapi reads it (wrapped in
// cmd/myelin for syncapi.DeviceListTracker, whose window type this package
// may not import).
type DeviceLists struct{ s *Service }

// DeviceLists returns the service's device-list stream.
func (s *Service) DeviceLists() *DeviceLists { return &DeviceLists{s: s} }

// StreamKey names the stream in sync tokens.
func (d *DeviceLists) StreamKey() string { return "k" }

// StreamPosition is the newest committed device-list position.
func (d *DeviceLists) StreamPosition() int64 { return d.s.deviceListPos.Load() }

// Window is the span one sync (or /keys/changes) covers: the device-list
// stream's (Since, UpTo] and the event log's (EventsSince, EventsUpTo].
// Initial marks a sync without since, for which the spec expects no
// device-list changes (the client queries the keys it needs).
type Window struct {
	Initial                 bool
	Since, UpTo             int64
	EventsSince, EventsUpTo int64
}

// Changes returns, for viewer, the users whose device lists changed in
// the window and who share a room with viewer now, plus those who started
// sharing a room with viewer in it (changed), and the users who stopped
// sharing any room with viewer in it (left). A user is never in both. As
// the spec allows, a user who joins another shared room may be reported
// changed again.
func (d *DeviceLists) Changes(ctx context.Context, viewer string, w Window) (changed, left []string, err error) {
	if w.Initial {
		return nil, nil, nil
	}
	s := d.s
	changedSet := map[string]bool{}
	candidates := map[string]bool{}

	locals, err := s.store.DeviceListChanges(ctx, w.Since, w.UpTo)
	if err != nil {
		return nil, nil, internal("read device-list changes", err)
	}
	for _, l := range locals {
		u := s.userID(l)
		if u == viewer {
			changedSet[u] = true // a user's own devices changed: their other devices care
			continue
		}
		candidates[u] = true
	}
	if len(candidates) > 0 {
		share, err := s.store.SharingRoom(ctx, viewer, keys(candidates))
		if err != nil {
			return nil, nil, internal("check shared rooms", err)
		}
		for u := range share {
			changedSet[u] = true
		}
	}

	moves, err := s.store.MembershipChanges(ctx, viewer, w.EventsSince, w.EventsUpTo)
	if err != nil {
		return nil, nil, internal("read membership changes", err)
	}
	others := map[string]bool{}
	var ownRooms []int64
	for _, m := range moves {
		if m.UserID == viewer {
			ownRooms = append(ownRooms, m.RoomNID)
		} else {
			others[m.UserID] = true
		}
	}
	if len(ownRooms) > 0 {
		// The viewer joined or left these rooms: everyone in them may be
		// new to the viewer, or no longer shared with.
		members, err := s.store.JoinedMembers(ctx, ownRooms)
		if err != nil {
			return nil, nil, internal("list room members", err)
		}
		for _, u := range members {
			others[u] = true
		}
	}
	delete(others, viewer)
	if len(others) > 0 {
		share, err := s.store.SharingRoom(ctx, viewer, keys(others))
		if err != nil {
			return nil, nil, internal("check shared rooms", err)
		}
		for u := range others {
			if share[u] {
				changedSet[u] = true
			} else if !changedSet[u] {
				left = append(left, u)
			}
		}
	}
	changed = keys(changedSet)
	sort.Strings(left)
	return changed, left, nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
