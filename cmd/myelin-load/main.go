// Command myelin-load drives a Matrix homeserver — Myelin or any other —
// through the public Client-Server API only, and measures it: registration,
// createRoom, joins, sends into one and many rooms, send→/sync fan-out to
// long-polling listeners, initial /sync and /messages back-pagination. Each
// scenario prints one JSON line (throughput, p50/p95/p99, errors, and with
// --pid the server's RSS, CPU and how long it stays busy afterwards). A soak
// mode sends at a constant rate and judges whether memory stays flat.
//
// It only ever talks to loopback addresses, and every loop is bounded in
// count and in time (--max-duration). `myelin-load report` turns the JSON
// lines of bench runs into docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `myelin-load — load a Matrix homeserver on this machine through the Client-Server API

Usage:
  myelin-load [flags]            run scenarios, one JSON line each (stdout and --out)
  myelin-load --soak [flags]     constant-rate send for --soak-duration, judging memory
  myelin-load report [flags]     write docs/performance.md from bench results (see report --help)

Scenarios (--scenarios, comma-separated names or numbers, default all):
  1 register          register --users users (m.login.dummy UIA, or --shared-secret)
  2 create_room       --rooms createRoom calls, --concurrency at a time
  3 join              a room fills to --members members
  4 send_one_room     --messages sends into one room of --members members, --concurrency senders
  5 send_many_rooms   --messages sends spread over --send-rooms rooms
  6 send_sync_fanout  one sender, --listeners long-polling /sync listeners
  7 initial_sync      initial /sync of a user in --sync-rooms rooms, --timeline-limit filter
  8 messages          /messages dir=b back-pagination, --page-limit per page

The target must resolve to loopback addresses only; anything else is refused.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "myelin-load:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "report" {
		return runReport(args[1:], stdout, stderr)
	}
	opt, outPath, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	base, err := checkBaseURL(ctx, net.DefaultResolver.LookupIPAddr, opt.BaseURL)
	if err != nil {
		return err
	}
	if opt.Server == "" {
		opt.Server = base.Host
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return load(ctx, opt, base.String(), outPath, stdout, log)
}

// load runs the scenarios against an already checked base URL.
func load(ctx context.Context, opt options, base, outPath string, stdout io.Writer, log *slog.Logger) error {
	var out io.Writer
	if outPath != "" {
		f, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		out = f
	}
	ctx, cancel := context.WithTimeout(ctx, opt.MaxDuration)
	defer cancel()
	c := newClient(base, opt.RequestTimeout)
	defer c.close()
	emit := func(res Result) error {
		line, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		line = append(line, '\n')
		if _, err := stdout.Write(line); err != nil {
			return err
		}
		if out != nil {
			if _, err := out.Write(line); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
		}
		return nil
	}
	return newRunner(opt, c, emit, log).runAll(ctx)
}

// defaultOptions is the workload: 50 users, C=8, 2,000 messages of
// ~100 bytes.
func defaultOptions() options {
	return options{
		BaseURL: "http://127.0.0.1:8008", Scenarios: scenarioOrder,
		Users: 50, Rooms: 50, Members: 50, Messages: 2000, Concurrency: 8, MsgSize: 100,
		SendRooms: 20, Listeners: 10, FanoutMessages: 200, FanoutInterval: 10 * time.Millisecond,
		SyncRooms: 21, TimelineLimit: 20, SyncRepeats: 50, PageLimit: 100, PagePasses: 5,
		MaxDuration: 10 * time.Minute, RequestTimeout: 30 * time.Second,
		SoakRate: 200, SoakDuration: 10 * time.Minute, SoakWarmup: time.Minute, SoakSample: 10 * time.Second,
		Busy: defaultBusy, ProcRoot: "/proc", FanoutDrain: 30 * time.Second,
	}
}

func parseFlags(args []string, stderr io.Writer) (options, string, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("myelin-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.BaseURL, "url", o.BaseURL, "homeserver base URL (must resolve to loopback)")
	fs.StringVar(&o.Server, "server", "", "label for the server in the results (default: host:port of --url)")
	fs.StringVar(&o.Durability, "durability", "", "label: the server's durability setting (e.g. full, relaxed), copied into every result")
	scen := fs.String("scenarios", "all", "scenarios to run: all, or comma-separated names or numbers 1-8")
	fs.IntVar(&o.Users, "users", o.Users, "users to register (scenario 1)")
	fs.IntVar(&o.Rooms, "rooms", o.Rooms, "rooms to create (scenario 2)")
	fs.IntVar(&o.Members, "members", o.Members, "members the joined room fills to (scenarios 3, 4)")
	fs.IntVar(&o.Messages, "messages", o.Messages, "messages to send (scenarios 4, 5; history for 8)")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "concurrent clients (senders, registrations, joins, creates)")
	fs.IntVar(&o.MsgSize, "body-bytes", o.MsgSize, "bytes of each message body")
	fs.IntVar(&o.SendRooms, "send-rooms", o.SendRooms, "rooms to spread sends over (scenario 5)")
	fs.IntVar(&o.Listeners, "listeners", o.Listeners, "long-polling /sync listeners (scenario 6)")
	fs.IntVar(&o.FanoutMessages, "fanout-messages", o.FanoutMessages, "messages sent to the listeners (scenario 6)")
	fs.DurationVar(&o.FanoutInterval, "fanout-interval", o.FanoutInterval, "pause between fan-out sends (scenario 6)")
	fs.IntVar(&o.SyncRooms, "sync-rooms", o.SyncRooms, "rooms of the initial-sync user (scenario 7)")
	fs.IntVar(&o.TimelineLimit, "timeline-limit", o.TimelineLimit, "timeline limit of the initial sync filter (scenario 7)")
	fs.IntVar(&o.SyncRepeats, "sync-repeats", o.SyncRepeats, "initial syncs to time (scenario 7)")
	fs.IntVar(&o.PageLimit, "page-limit", o.PageLimit, "events per /messages page (scenario 8)")
	fs.IntVar(&o.PagePasses, "page-passes", o.PagePasses, "passes through the history (scenario 8)")
	fs.IntVar(&o.PID, "pid", 0, "server process ID: report its RSS, CPU and busy time from /proc")
	fs.StringVar(&o.Disk, "disk", "", "server data directory: report its growth per operation")
	out := fs.String("out", "", "also append the JSON lines to this file")
	fs.DurationVar(&o.MaxDuration, "max-duration", o.MaxDuration, "stop everything after this long")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "timeout of one request (long polls get theirs on top)")
	fs.StringVar(&o.SharedSecret, "shared-secret", "", "register via /_synapse/admin/v1/register with this secret (or $MYELIN_LOAD_SHARED_SECRET)")
	fs.BoolVar(&o.Soak, "soak", false, "soak mode: constant-rate sends, memory verdict")
	fs.Float64Var(&o.SoakRate, "soak-rate", o.SoakRate, "soak: messages per second")
	fs.DurationVar(&o.SoakDuration, "soak-duration", o.SoakDuration, "soak: how long to send")
	fs.DurationVar(&o.SoakWarmup, "soak-warmup", o.SoakWarmup, "soak: memory is judged after this")
	fs.DurationVar(&o.SoakSample, "soak-sample", o.SoakSample, "soak: RSS sampling period")
	if err := fs.Parse(args); err != nil {
		return o, "", err
	}
	if fs.NArg() > 0 {
		return o, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.SharedSecret == "" {
		o.SharedSecret = os.Getenv("MYELIN_LOAD_SHARED_SECRET")
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if o.Soak && !explicit["max-duration"] {
		// A soak is long by design; leave room for its setup.
		o.MaxDuration = o.SoakDuration + 5*time.Minute
	}
	var err error
	if o.Scenarios, err = parseScenarios(*scen); err != nil {
		return o, "", err
	}
	return o, *out, o.validate()
}

// parseScenarios accepts "all" or names/numbers, and returns them in the
// canonical order (later scenarios reuse what earlier ones built).
func parseScenarios(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return scenarioOrder, nil
	}
	want := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if n, err := strconv.Atoi(part); err == nil {
			if n < 1 || n > len(scenarioOrder) {
				return nil, fmt.Errorf("--scenarios: no scenario %d (1-%d)", n, len(scenarioOrder))
			}
			part = scenarioOrder[n-1]
		}
		known := false
		for _, name := range scenarioOrder {
			known = known || name == part
		}
		if !known {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q (known: %s)", part, strings.Join(scenarioOrder, ", "))
		}
		want[part] = true
	}
	var out []string
	for _, name := range scenarioOrder {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// validate bounds every count, so no flag can make a loop unbounded.
func (o options) validate() error {
	const maxCount = 1_000_000
	var errs []error
	ints := []struct {
		name   string
		v      int
		lo, hi int
	}{
		{"users", o.Users, 1, maxCount}, {"rooms", o.Rooms, 1, maxCount}, {"members", o.Members, 2, 100_000},
		{"messages", o.Messages, 1, maxCount}, {"concurrency", o.Concurrency, 1, 1024},
		{"body-bytes", o.MsgSize, 1, 60_000}, {"send-rooms", o.SendRooms, 1, 10_000},
		{"listeners", o.Listeners, 1, 1000}, {"fanout-messages", o.FanoutMessages, 1, 100_000},
		{"sync-rooms", o.SyncRooms, 1, 10_000}, {"timeline-limit", o.TimelineLimit, 1, 1000},
		{"sync-repeats", o.SyncRepeats, 1, 100_000}, {"page-limit", o.PageLimit, 1, 1000},
		{"page-passes", o.PagePasses, 1, 1000},
	}
	for _, f := range ints {
		if f.v < f.lo || f.v > f.hi {
			errs = append(errs, fmt.Errorf("--%s must be in [%d, %d], got %d", f.name, f.lo, f.hi, f.v))
		}
	}
	durs := []struct {
		name   string
		v      time.Duration
		lo, hi time.Duration
	}{
		{"max-duration", o.MaxDuration, time.Second, 24 * time.Hour},
		{"request-timeout", o.RequestTimeout, 100 * time.Millisecond, 10 * time.Minute},
		{"fanout-interval", o.FanoutInterval, 0, time.Minute},
		{"soak-duration", o.SoakDuration, time.Second, 24 * time.Hour},
		{"soak-warmup", o.SoakWarmup, 0, 24 * time.Hour},
		{"soak-sample", o.SoakSample, 100 * time.Millisecond, time.Hour},
	}
	for _, f := range durs {
		if f.v < f.lo || f.v > f.hi {
			errs = append(errs, fmt.Errorf("--%s must be in [%s, %s], got %s", f.name, f.lo, f.hi, f.v))
		}
	}
	if o.SoakRate <= 0 || o.SoakRate > 100_000 {
		errs = append(errs, fmt.Errorf("--soak-rate must be in (0, 100000], got %g", o.SoakRate))
	}
	if o.PID < 0 {
		errs = append(errs, fmt.Errorf("--pid must be positive, got %d", o.PID))
	}
	return errors.Join(errs...)
}
