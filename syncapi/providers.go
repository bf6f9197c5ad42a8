package syncapi

import (
	"context"
	"encoding/json"
)

// The interfaces below are how other components fill the parts of a /sync
// response they own: unread notification counts (push rules) and the
// end-to-end encryption bookkeeping (to-device messages, device-list
// changes, one-time and fallback key counts). Each is optional; without a
// provider the section is present and empty (counts zero), which is the
// truthful answer for a server that stores no such data.
//
// A provider whose data changes calls Service.Wake with the users concerned
// after its commit, so their long-polls return.

// UnreadCounter reports unread notification counts per room.
type UnreadCounter interface {
	// UnreadCounts returns the counts of userID in each of roomIDs (rooms
	// absent from the result count zero). With threads set, each room's
	// counts cover its main timeline and Threads holds each thread's.
	UnreadCounts(ctx context.Context, userID string, roomIDs []string, threads bool) (map[string]UnreadCounts, error)
}

// CountWaiter is optionally implemented by an UnreadCounter whose counts
// trail the event log (they are computed after each commit): WaitCounted
// returns once the counts include every event up to pos, or after the
// counter's own bound. A sync calls it early, beside its other reads, so
// the counter's lag and the sync's work overlap.
type CountWaiter interface {
	WaitCounted(ctx context.Context, pos int64)
}

// UnreadCounts are one room's (or thread's) unread notification counts.
type UnreadCounts struct {
	Highlight    int64
	Notification int64
	// Threads maps thread root event IDs to their counts (only when asked
	// for threads).
	Threads map[string]UnreadCounts
}

// PushRulesSource gives a user's effective push rules as m.push_rules
// content. The push-rule owner writes that account data only when the
// user edits their rules, so an initial sync of a user who never did asks
// here: the spec has the rules in every initial sync's account data.
type PushRulesSource interface {
	PushRulesContent(ctx context.Context, userID string) (json.RawMessage, error)
}

// StreamSource is a stream kept by a provider. Its position travels in the
// since token under StreamKey, so the provider decides what a position
// means; syncapi only stores and compares it.
type StreamSource interface {
	// StreamKey names the stream in tokens: lowercase ASCII letters, not
	// one of syncapi's own keys (e, a, r, y, p).
	StreamKey() string
	// StreamPosition is the newest committed position: everything at or
	// below it must already be readable.
	StreamPosition() int64
}

// ToDeviceInbox delivers send-to-device messages.
type ToDeviceInbox interface {
	StreamSource
	// ToDevice returns the device's messages with since < position <= upTo,
	// oldest first, at most limit, and the position the next sync resumes
	// after: the last one returned, or upTo when none remain. A client that
	// syncs from since has received everything at or below it, so the inbox
	// may delete those messages now (and only now: a lost response is
	// retried with the old since and gets them again).
	ToDevice(ctx context.Context, userID, deviceID string, since, upTo int64, limit int) (events []json.RawMessage, next int64, err error)
}

// DeviceListTracker reports device-list changes.
type DeviceListTracker interface {
	StreamSource
	// DeviceListChanges returns the users whose devices changed and who
	// share an encrypted room with userID (changed), and those who no
	// longer share any (left), between two sync positions. Membership
	// changes are in the event log: w carries the event-log window as well
	// as the tracker's own.
	DeviceListChanges(ctx context.Context, userID string, w DeviceListWindow) (changed, left []string, err error)
}

// DeviceListWindow is the span one sync covers. Initial is set for a sync
// without since (the spec then expects no device_lists changes).
type DeviceListWindow struct {
	Initial                 bool
	Since, UpTo             int64 // the tracker's stream
	EventsSince, EventsUpTo int64 // the event log
}

// KeyCounter reports a device's end-to-end encryption key counts.
type KeyCounter interface {
	// OneTimeKeyCounts returns the number of unclaimed one-time keys per
	// algorithm.
	OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error)
	// UnusedFallbackKeyTypes lists the algorithms of unused fallback keys.
	UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error)
}
