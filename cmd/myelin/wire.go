package main

import (
	"context"
	"net/http"

	"myelin/account"
	"myelin/clientapi"
	"myelin/config"
	"myelin/internal/httpapi"
	"myelin/internal/serverkeys"
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
	_ = keys // the signing key is used by the roomserver and federation
	accounts, err := account.New(cfg, db)
	if err != nil {
		return nil, err
	}
	client, err := clientapi.New(clientapi.Options{Config: cfg, Accounts: accounts, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	return &app{Client: client}, nil
}
