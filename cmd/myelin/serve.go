package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"myelin/internal/httpapi"
	"myelin/internal/serverkeys"
)

// shutdownGrace bounds how long in-flight requests (long polls included) may
// run after SIGTERM before connections are closed.
const shutdownGrace = 10 * time.Second

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	keys, err := serverkeys.LoadOrCreate(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("server keys: %w", err)
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	// The registry is built here and passed down, so tests and a second
	// server in one process never collide on the global registry.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := httpapi.NewMetrics(reg)

	app, err := wire(ctx, cfg, db, keys, metrics, reg)
	if err != nil {
		return err
	}
	defer app.Close()

	clientMux := http.NewServeMux()
	if cfg.Metrics.Enabled {
		clientMux.Handle(cfg.Metrics.Path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	clientMux.Handle("/", app.Client)

	servers := []*http.Server{newServer(cfg.Listeners.Client, clientMux, log)}
	errc := make(chan error, 3)
	ln, err := net.Listen("tcp", cfg.Listeners.Client)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listeners.Client, err)
	}
	go func() { errc <- servers[0].Serve(ln) }()
	log.Info("client API listening", "addr", ln.Addr().String(), "server_name", cfg.ServerName, "database", cfg.Database.Engine)

	if cfg.Listeners.Federation != "" && app.Federation != nil {
		fed := newServer(cfg.Listeners.Federation, app.Federation, log)
		servers = append(servers, fed)
		fln, err := net.Listen("tcp", cfg.Listeners.Federation)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listeners.Federation, err)
		}
		go func() {
			if cfg.Listeners.TLSCert != "" {
				errc <- fed.ServeTLS(fln, cfg.Listeners.TLSCert, cfg.Listeners.TLSKey)
			} else {
				errc <- fed.Serve(fln)
			}
		}()
		log.Info("federation API listening", "addr", fln.Addr().String(), "tls", cfg.Listeners.TLSCert != "")
	}

	if cfg.Debug.PprofListen != "" {
		// Its own listener and mux (not http.DefaultServeMux): Verify only
		// lets a loopback address through.
		dbg := newServer(cfg.Debug.PprofListen, pprofMux(), log)
		servers = append(servers, dbg)
		dln, err := net.Listen("tcp", cfg.Debug.PprofListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Debug.PprofListen, err)
		}
		go func() { errc <- dbg.Serve(dln) }()
		log.Info("pprof listening", "addr", dln.Addr().String())
	}

	// Startup (migrations, keys, routes, caches) leaves garbage that the
	// runtime would only hand back to the OS gradually; a server waiting
	// for its first request should not hold it (about 1 MB of idle RSS).
	debug.FreeOSMemory()

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	// Stop accepting, let in-flight requests finish, then close the
	// components (which flush their queues) and the database.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	app.Drain()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "addr", s.Addr, "err", err)
		}
	}
	return nil
}

// pprofMux serves net/http/pprof's handlers under /debug/pprof/.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: /sync long-polls for up to minutes.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
