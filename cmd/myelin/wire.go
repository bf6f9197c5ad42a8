package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"myelin/account"
	"myelin/clientapi"
	"myelin/config"
	"myelin/internal/httpapi"
	"myelin/internal/serverkeys"
	"myelin/roomserver"
	"myelin/storage"
)

// app is the wired server: its HTTP surfaces and what must be closed on
// shutdown, in order.
type app struct {
	Client http.Handler
	// Federation is nil until the federation component exists; the listener
	// is then not opened.
	Federation http.Handler
	closers    []func()
}

func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// wire builds every component from the config, the open database and the
// server's keys. It is the only place that knows how they fit together.
func wire(ctx context.Context, cfg *config.Config, db *storage.DB, keys *serverkeys.Keys, metrics *httpapi.Metrics) (*app, error) {
	_ = ctx
	a := &app{}
	accounts, err := account.New(cfg, db)
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
	client, err := clientapi.New(clientapi.Options{Config: cfg, Accounts: accounts, Rooms: rooms, Metrics: metrics})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Client = client
	return a, nil
}
