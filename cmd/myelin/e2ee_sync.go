package main

import (
	"context"

	"myelin/e2ee"
	"myelin/syncapi"
)

// deviceListTracker adapts e2ee's device-list stream to
// syncapi.DeviceListTracker: the window type is syncapi's, and e2ee may not
// import syncapi (it sits below it), so the composition root converts.
type deviceListTracker struct{ *e2ee.DeviceLists }

func (d deviceListTracker) DeviceListChanges(ctx context.Context, userID string, w syncapi.DeviceListWindow) (changed, left []string, err error) {
	return d.Changes(ctx, userID, e2ee.Window{
		Initial: w.Initial, Since: w.Since, UpTo: w.UpTo, EventsSince: w.EventsSince, EventsUpTo: w.EventsUpTo,
	})
}

// The e2ee service fills syncapi's end-to-end encryption sections.
var (
	_ syncapi.ToDeviceInbox     = (*e2ee.ToDeviceInbox)(nil)
	_ syncapi.DeviceListTracker = deviceListTracker{}
	_ syncapi.KeyCounter        = (*e2ee.Service)(nil)
)
