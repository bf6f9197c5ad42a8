package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"myelin/account"
	"myelin/clientapi"
	"myelin/config"
	"myelin/e2ee"
	"myelin/internal/httpapi"
	"myelin/internal/outbound"
	"myelin/internal/serverkeys"
	"myelin/media"
	"myelin/notifications"
	"myelin/pusher"
	"myelin/roomserver"
	"myelin/storage"
	"myelin/syncapi"
)

// app is the wired server: its HTTP surfaces and what must be closed on
// shutdown, in order.
type app struct {
	Client http.Handler
	// Federation is nil until the federation component exists; the listener
	// is then not opened.
	Federation http.Handler
	closers    []func()
	// drainers run when shutdown begins, before in-flight requests are
	// waited for: they end requests that would otherwise wait (long-polls).
	drainers []func()
}

// Drain ends waiting requests so the listeners can shut down promptly.
func (a *app) Drain() {
	for _, d := range a.drainers {
		d()
	}
}

func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// wire builds every component from the config, the open database and the
// server's keys. It is the only place that knows how they fit together.
func wire(ctx context.Context, cfg *config.Config, db *storage.DB, keys *serverkeys.Keys, metrics *httpapi.Metrics, reg prometheus.Registerer) (*app, error) {
	_ = ctx
	a := &app{}
	// End-to-end encryption bookkeeping; account tells it when devices go
	// (their keys go in the same transaction) so other clients hear of it.
	e2eeSvc, err := e2ee.New(e2ee.Options{DB: db, ServerName: cfg.ServerName})
	if err != nil {
		return nil, err
	}
	// Pushers go with the device that created them; notifications is built
	// after account, so the hook looks it up when devices are removed.
	var notifForDevices atomic.Pointer[notifications.Service]
	accounts, err := account.New(cfg, db, account.WithDevicesRemoved(func(localpart string) {
		e2eeSvc.DevicesRemoved(localpart)
		if n := notifForDevices.Load(); n != nil {
			n.DevicesRemoved(localpart)
		}
	}),
		// Access-token cache hit/miss counters (the cache is on by default).
		account.WithMetrics(reg))
	if err != nil {
		return nil, err
	}
	rooms, err := roomserver.New(db, roomserver.Config{
		ServerName:         cfg.ServerName,
		KeyID:              keys.KeyID,
		SigningKey:         keys.SigningKey,
		DefaultRoomVersion: cfg.Rooms.DefaultRoomVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("roomserver: %w", err)
	}
	// Closing the roomserver commits every event already accepted; it runs
	// after the listeners stopped and before the database closes.
	a.closers = append(a.closers, func() {
		if err := rooms.Close(); err != nil {
			slog.Error("closing the roomserver", "err", err)
		}
	})
	// Push rules: evaluates each new event for the room's local members and
	// keeps unread counts and the notification list.
	notif, err := notifications.New(notifications.Options{DB: db, Rooms: rooms, ServerName: cfg.ServerName})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("notifications: %w", err)
	}
	notifForDevices.Store(notif)
	a.closers = append(a.closers, func() {
		if err := notif.Close(); err != nil {
			slog.Error("closing notifications", "err", err)
		}
	})
	// Push delivery: notifications queue one delivery per HTTP pusher in
	// their own transaction; the pusher drains that queue to the push
	// gateways through the one SSRF-safe outbound client. It closes before
	// notifications and the roomserver (closers run in reverse).
	allowNets, err := cfg.Outbound.AllowPrefixes()
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("outbound: %w", err)
	}
	pushSvc, err := pusher.New(pusher.Options{DB: db, Events: rooms, Config: cfg.Push, Registerer: reg,
		Client: outbound.New(outbound.Options{Allow: allowNets, UserAgent: "Myelin"})})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("pusher: %w", err)
	}
	a.closers = append(a.closers, func() {
		if err := pushSvc.Close(); err != nil {
			slog.Error("closing the pusher", "err", err)
		}
	})
	syncSvc, err := syncapi.New(syncapi.Options{DB: db, Rooms: rooms, Unread: unreadCounter{notif},
		// The E2EE sections of /sync: to-device messages, device-list
		// changes, one-time and fallback key counts.
		ToDevice: e2eeSvc.ToDeviceInbox(), DeviceLists: deviceListTracker{DeviceLists: e2eeSvc.DeviceLists(), members: rooms.Memberships()}, Keys: e2eeSvc,
		// The default push rules in the initial sync of a user who never
		// edited theirs.
		PushRules: notif,
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("syncapi: %w", err)
	}
	e2eeSvc.SetWaker(syncSvc.Wake)
	notif.SetWake(func(userIDs ...string) {
		syncSvc.Wake(userIDs...)
		pushSvc.Wake() // the same commit may have queued push deliveries
	})
	// Notifications committed before the hook was set may have queued
	// deliveries too.
	pushSvc.Wake()
	notif.SetRulesPublisher(func(ctx context.Context, userID string, content json.RawMessage) error {
		return syncSvc.SetAccountData(ctx, userID, "", "m.push_rules", content)
	})
	// Closing the sync API answers every parked long-poll at once; it runs
	// when shutdown begins (and again, harmlessly, with the closers, which
	// run in reverse: before the roomserver).
	closeSync := func() {
		if err := syncSvc.Close(); err != nil {
			slog.Error("closing the sync API", "err", err)
		}
	}
	a.drainers = append(a.drainers, closeSync)
	a.closers = append(a.closers, closeSync)
	// The media repository: files under <data_dir>/media, rows in the database.
	// URL previews fetch through their own outbound client (same
	// allow-list as push): bodies up to max_upload_size (a page's image is
	// stored like an upload) or the HTML read, whichever is larger.
	previewClient := outbound.New(outbound.Options{Allow: allowNets, Timeout: 20 * time.Second,
		MaxResponseBytes: media.PreviewFetchLimit(cfg.Media), UserAgent: "Myelin (URL preview)"})
	mediaSvc, err := media.New(media.Options{Config: cfg, DB: db, Fetcher: previewClient})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("media: %w", err)
	}
	a.closers = append(a.closers, previewClient.CloseIdleConnections)
	client, err := clientapi.New(clientapi.Options{Config: cfg, Accounts: accounts, Rooms: rooms, Sync: syncSvc, Keys: e2eeSvc, Push: notif, Media: mediaSvc, Metrics: metrics})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Client = client
	return a, nil
}
