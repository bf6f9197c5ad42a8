package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// options are the tool's settings; the flags in main.go fill them.
type options struct {
	BaseURL        string
	Server         string // label in every result
	Durability     string // the server's durability setting: label in every result
	Scenarios      []string
	Users          int
	Rooms          int
	Members        int
	Messages       int
	Concurrency    int
	MsgSize        int
	SendRooms      int
	Listeners      int
	FanoutMessages int
	FanoutInterval time.Duration
	SyncRooms      int
	TimelineLimit  int
	SyncRepeats    int
	PageLimit      int
	PagePasses     int
	PID            int
	Disk           string
	MaxDuration    time.Duration
	RequestTimeout time.Duration
	SharedSecret   string

	Soak         bool
	SoakRate     float64
	SoakDuration time.Duration
	SoakWarmup   time.Duration
	SoakSample   time.Duration

	// Fixed in the tool, shorter in tests.
	Busy        busyPolicy
	ProcRoot    string
	FanoutDrain time.Duration // how long listeners may lag after the last send
}

// runner holds what scenarios share: the client, the pool of registered
// users, and rooms earlier scenarios left behind for later ones.
type runner struct {
	opt      options
	c        *client
	proc     *procReader // nil without --pid
	emit     func(Result) error
	log      *slog.Logger
	runID    string // makes user names and txnIds unique per run
	password string
	filler   string // the ~MsgSize-byte message body

	nextUser     atomic.Int64
	nextTxn      atomic.Int64
	messagesSent atomic.Int64

	// Changed only between scenarios, never concurrently.
	users        []*user // the pool; scenario "register" fills it
	fullRoom     string  // filled to opt.Members by "join"
	historyRoom  string  // holds historyCount messages from "send_one_room"
	historyCount int
}

func newRunner(opt options, c *client, emit func(Result) error, log *slog.Logger) *runner {
	r := &runner{opt: opt, c: c, emit: emit, log: log, runID: randomHex(4), password: "load-" + randomHex(12)}
	if opt.PID > 0 {
		r.proc = &procReader{root: opt.ProcRoot, pid: opt.PID}
	}
	r.filler = filler(opt.MsgSize)
	return r
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// filler is a readable ASCII body of exactly n bytes.
func filler(n int) string {
	const text = "The quick brown fox jumps over the lazy dog; the vet checks Rex's paw at 10:30. "
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(text)
	}
	return b.String()[:n]
}

// scenarioOrder is every scenario, in the order they run.
var scenarioOrder = []string{
	"register", "create_room", "join", "send_one_room", "send_many_rooms",
	"send_sync_fanout", "initial_sync", "messages",
}

// scenario is a named measurement: setup (not measured) then run.
type scenario struct {
	name   string
	unit   string
	params map[string]any
	setup  func(ctx context.Context) error
	run    func(ctx context.Context) measure
	finish func(*Result) // optional: adds scenario-specific fields
}

func (r *runner) scenario(name string) (scenario, error) {
	switch name {
	case "register":
		return r.registerScenario(), nil
	case "create_room":
		return r.createRoomScenario(), nil
	case "join":
		return r.joinScenario(), nil
	case "send_one_room":
		return r.sendOneRoomScenario(), nil
	case "send_many_rooms":
		return r.sendManyRoomsScenario(), nil
	case "send_sync_fanout":
		return r.fanoutScenario(), nil
	case "initial_sync":
		return r.initialSyncScenario(), nil
	case "messages":
		return r.messagesScenario(), nil
	}
	return scenario{}, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(scenarioOrder, ", "))
}

// runAll runs the selected scenarios (or the soak) and a closing summary.
// Every scenario produces a line, including those that failed or could not
// run before --max-duration.
func (r *runner) runAll(ctx context.Context) error {
	start := time.Now()
	var idle *procSample
	if r.proc != nil {
		s, err := r.proc.read()
		if err != nil {
			return fmt.Errorf("--pid: %w", err)
		}
		idle = &s
	}
	if r.opt.Soak {
		if err := r.emit(r.runScenario(ctx, r.soakScenario())); err != nil {
			return err
		}
	} else {
		for _, name := range r.opt.Scenarios {
			sc, err := r.scenario(name)
			if err != nil {
				return err
			}
			if err := r.emit(r.runScenario(ctx, sc)); err != nil {
				return err
			}
		}
	}
	sum := Result{
		Scenario: "run_summary", Server: r.opt.Server, Durability: r.opt.Durability, Status: "ok",
		DurationS:    round3(time.Since(start).Seconds()),
		MessagesSent: r.messagesSent.Load(), Requests: r.c.requests.Load(), RateLimited: r.c.rateLimited.Load(),
	}
	if ctx.Err() != nil {
		sum.Status, sum.Error = "partial", "stopped: --max-duration reached"
	}
	if idle != nil {
		sum.RSSIdleMB = mb(idle.RSSBytes)
		if s, err := r.proc.read(); err == nil {
			sum.RSSEndMB = mb(s.RSSBytes)
			sum.CPUS = ptr(round3(s.cpuSeconds() - idle.cpuSeconds()))
		} else {
			sum.Status, sum.Error = "partial", fmt.Sprintf("--pid: %v", err)
		}
	}
	return r.emit(sum)
}

// runScenario sets up, measures, and samples the server around the
// measured phase only.
func (r *runner) runScenario(ctx context.Context, sc scenario) Result {
	res := Result{Scenario: sc.name, Server: r.opt.Server, Durability: r.opt.Durability, Unit: sc.unit, Params: sc.params}
	if ctx.Err() != nil {
		res.Status, res.Error = "failed", "not run: --max-duration reached"
		return res
	}
	r.log.Info("scenario: setup", "scenario", sc.name)
	if err := sc.setup(ctx); err != nil {
		res.Status, res.Error = "failed", "setup: "+err.Error()
		if ctx.Err() != nil {
			res.Error += " (stopped: --max-duration reached)"
		}
		return res
	}
	rl0 := r.c.rateLimited.Load()
	var before procSample
	var procErr error
	if r.proc != nil {
		before, procErr = r.proc.read()
	}
	var diskBefore int64
	var diskErr error
	if r.opt.Disk != "" {
		diskBefore, diskErr = dirBytes(r.opt.Disk)
	}

	r.log.Info("scenario: run", "scenario", sc.name)
	m := sc.run(ctx)

	var after procSample
	if r.proc != nil && procErr == nil {
		after, procErr = r.proc.read()
	}
	m.fill(&res)
	if sc.finish != nil {
		sc.finish(&res)
	}
	res.RateLimited = r.c.rateLimited.Load() - rl0
	if ctx.Err() != nil && res.Error != "" {
		res.Error += " (stopped: --max-duration reached)"
	}
	if r.opt.Disk != "" && diskErr == nil {
		var diskAfter int64
		if diskAfter, diskErr = dirBytes(r.opt.Disk); diskErr == nil {
			res.DiskBeforeBytes, res.DiskAfterBytes = &diskBefore, &diskAfter
			if res.Count > 0 {
				res.DiskPerOpBytes = ptr(round3(float64(diskAfter-diskBefore) / float64(res.Count)))
			}
		}
	}
	if diskErr != nil {
		r.log.Warn("--disk", "err", diskErr)
	}
	if r.proc != nil {
		if procErr != nil {
			r.log.Warn("--pid", "err", procErr)
			return res
		}
		res.RSSBeforeMB, res.RSSAfterMB = mb(before.RSSBytes), mb(after.RSSBytes)
		cpu := after.cpuSeconds() - before.cpuSeconds()
		res.CPUS = ptr(round3(cpu))
		if m.ops > 0 {
			res.CPUMSPerOp = ptr(round3(cpu * 1000 / float64(m.ops)))
		}
		busy, capped, err := busyAfter(ctx, r.opt.Busy, r.proc.cpuTicks)
		if err == nil {
			res.BusyAfterS, res.BusyCapped = ptr(round3(busy.Seconds())), capped
		} else {
			r.log.Warn("busy-after", "err", err)
		}
	}
	return res
}

// runOps runs n operations on conc workers and times each. It stops taking
// new operations when ctx ends; the ones never started count as errors, so
// a stopped scenario never looks complete.
func runOps(ctx context.Context, n, conc int, op func(ctx context.Context, worker, i int) error) measure {
	conc = max(1, min(conc, n))
	var next atomic.Int64
	type workerOut struct {
		lat      []time.Duration
		errs     int
		firstErr error
		started  int
	}
	outs := make([]workerOut, conc)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[w]
			o.lat = make([]time.Duration, 0, n/conc+1)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				o.started++
				t0 := time.Now()
				err := op(ctx, w, i)
				d := time.Since(t0)
				if err != nil {
					o.errs++
					if o.firstErr == nil {
						o.firstErr = err
					}
					continue
				}
				o.lat = append(o.lat, d)
			}
		}()
	}
	wg.Wait()
	m := measure{elapsed: time.Since(start)}
	started := 0
	for _, o := range outs {
		m.latencies = append(m.latencies, o.lat...)
		m.errors += o.errs
		if m.firstErr == nil {
			m.firstErr = o.firstErr
		}
		started += o.started
	}
	m.ops = len(m.latencies)
	if started < n {
		m.errors += n - started
		if m.firstErr == nil {
			m.firstErr = fmt.Errorf("%d of %d operations not started: %w", n-started, n, context.Cause(ctx))
		}
	}
	return m
}

// --- setup helpers (not measured) ---

func (r *runner) newUserName() string {
	return fmt.Sprintf("load%s_%d", r.runID, r.nextUser.Add(1))
}

func (r *runner) registerOne(ctx context.Context) (*user, error) {
	name := r.newUserName()
	if r.opt.SharedSecret != "" {
		return r.c.registerSharedSecret(ctx, r.opt.SharedSecret, name, r.password)
	}
	return r.c.registerDummy(ctx, name, r.password)
}

// ensureUsers grows the pool to k users.
func (r *runner) ensureUsers(ctx context.Context, k int) error {
	need := k - len(r.users)
	if need <= 0 {
		return nil
	}
	got := make([]*user, need)
	m := runOps(ctx, need, r.opt.Concurrency, func(ctx context.Context, _, i int) error {
		u, err := r.registerOne(ctx)
		got[i] = u
		return err
	})
	if m.errors > 0 {
		return fmt.Errorf("register %d users: %d failed: %w", need, m.errors, m.firstErr)
	}
	r.users = append(r.users, got...)
	return nil
}

// roomWithMembers creates a room as members[0] and joins the rest.
func (r *runner) roomWithMembers(ctx context.Context, members []*user) (string, error) {
	room, err := r.c.createRoom(ctx, members[0], "")
	if err != nil {
		return "", err
	}
	if err := r.joinAll(ctx, room, members[1:]); err != nil {
		return "", err
	}
	return room, nil
}

func (r *runner) joinAll(ctx context.Context, room string, users []*user) error {
	if len(users) == 0 {
		return nil
	}
	m := runOps(ctx, len(users), r.opt.Concurrency, func(ctx context.Context, _, i int) error {
		return r.c.join(ctx, users[i], room)
	})
	if m.errors > 0 {
		return fmt.Errorf("join %d users: %d failed: %w", len(users), m.errors, m.firstErr)
	}
	return nil
}

func (r *runner) txnID() string { return fmt.Sprintf("%s.%d", r.runID, r.nextTxn.Add(1)) }

func (r *runner) content() map[string]any {
	return map[string]any{"msgtype": "m.text", "body": r.filler}
}

func (r *runner) sendOne(ctx context.Context, u *user, room string, content any) (string, error) {
	id, err := r.c.send(ctx, u, room, r.txnID(), content)
	if err == nil {
		r.messagesSent.Add(1)
	}
	return id, err
}

// fillRoom sends n messages into room from senders (setup).
func (r *runner) fillRoom(ctx context.Context, room string, senders []*user, n int) error {
	m := runOps(ctx, n, len(senders), func(ctx context.Context, w, _ int) error {
		_, err := r.sendOne(ctx, senders[w], room, r.content())
		return err
	})
	if m.errors > 0 {
		return fmt.Errorf("send %d messages: %d failed: %w", n, m.errors, m.firstErr)
	}
	return nil
}
