package main

import (
	"context"

	"myelin/notifications"
	"myelin/syncapi"
)

// unreadCounter adapts the notifications service to syncapi.UnreadCounter:
// the counts type is syncapi's, and notifications does not import syncapi
// (they are siblings), so the composition root converts.
type unreadCounter struct{ *notifications.Service }

func (u unreadCounter) UnreadCounts(ctx context.Context, userID string, roomIDs []string, threads bool) (map[string]syncapi.UnreadCounts, error) {
	counts, err := u.Service.UnreadCounts(ctx, userID, roomIDs, threads)
	if err != nil {
		return nil, err
	}
	out := make(map[string]syncapi.UnreadCounts, len(counts))
	for room, c := range counts {
		sc := syncapi.UnreadCounts{Highlight: c.Highlight, Notification: c.Notification}
		if c.Threads != nil {
			sc.Threads = make(map[string]syncapi.UnreadCounts, len(c.Threads))
			for t, tc := range c.Threads {
				sc.Threads[t] = syncapi.UnreadCounts{Highlight: tc.Highlight, Notification: tc.Notification}
			}
		}
		out[room] = sc
	}
	return out, nil
}

var _ syncapi.UnreadCounter = unreadCounter{}
var _ syncapi.CountWaiter = unreadCounter{}
