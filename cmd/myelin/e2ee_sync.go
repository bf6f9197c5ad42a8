package main

import (
	"context"

	"myelin/e2ee"
	"myelin/roomserver"
	"myelin/syncapi"
)

// deviceListTracker adapts e2ee's device-list stream to
// syncapi.DeviceListTracker: the window type is syncapi's, and e2ee may not
// import syncapi (it sits below it), so the composition root converts.
//
// It also empties the event window when the roomserver's membership clock
// says no membership event was committed in it: e2ee reads the window only
// for membership changes, and every message wakes each member's
// long-poll, which would otherwise search the window for none.
type deviceListTracker struct {
	*e2ee.DeviceLists
	members *roomserver.MembershipClock
}

func (d deviceListTracker) DeviceListChanges(ctx context.Context, userID string, w syncapi.DeviceListWindow) (changed, left []string, err error) {
	upTo := w.EventsUpTo
	if d.members.LastChange() <= w.EventsSince {
		upTo = w.EventsSince
	}
	return d.Changes(ctx, userID, e2ee.Window{
		Initial: w.Initial, Since: w.Since, UpTo: w.UpTo, EventsSince: w.EventsSince, EventsUpTo: upTo,
	})
}

// The e2ee service fills syncapi's end-to-end encryption sections.
var (
	_ syncapi.ToDeviceInbox     = (*e2ee.ToDeviceInbox)(nil)
	_ syncapi.DeviceListTracker = deviceListTracker{}
	_ syncapi.KeyCounter        = (*e2ee.Service)(nil)
)
