// Package pusher owns delivery of notifications to push gateways: a
// durable, at-least-once queue (storage.PushQueue, filled in the same
// transaction as the notifications it delivers) drained per pusher, in
// order, through the one SSRF-safe outbound client, with exponential
// backoff and jitter per pusher. A gateway that rejects a pushkey removes
// that pusher. See README.md.
package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"myelin/config"
	"myelin/internal/outbound"
	"myelin/roomserver"
	"myelin/storage"
)

// maxConcurrent bounds deliveries in flight across all pushers: a burst
// of notifications to many users must not open unbounded connections.
const maxConcurrent = 16

// maxGatewayResponse bounds a gateway's answer ({"rejected": [...]}).
const maxGatewayResponse = 64 << 10

// EventReader turns event-log rows into events (roomserver.Service).
type EventReader interface {
	EventsFromLog(ctx context.Context, rows []storage.StoredEvent, roomIDs map[int64]string) ([]*roomserver.Event, error)
}

// Options configure a Service. DB, Events and Client are required.
type Options struct {
	DB     *storage.DB
	Events EventReader
	Client *outbound.Client
	Config config.Push
	// Registerer takes the delivery metrics (none registered if nil).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Service delivers queued notifications to push gateways.
type Service struct {
	opts  Options
	queue *storage.PushQueue
	sync  *storage.Sync
	log   *slog.Logger

	wake chan struct{}
	sem  chan struct{}

	mu     sync.Mutex
	states map[storage.PusherKey]*pusherState

	deliveries *prometheus.CounterVec
	pending    prometheus.Gauge

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
}

// pusherState is a pusher's delivery state in memory: whether a drain runs
// and, after failures, when it may try again.
type pusherState struct {
	busy      bool
	streak    int // consecutive failed attempts
	notBefore time.Time
}

// New starts the delivery loop; it first delivers whatever the queue held
// at the last shutdown.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.Events == nil || opts.Client == nil {
		return nil, errors.New("pusher: DB, Events and Client are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &opts.Config
	def := config.Default().Push
	if c.GatewayTimeout <= 0 {
		c.GatewayTimeout = def.GatewayTimeout
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = def.InitialBackoff
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = max(def.MaxBackoff, c.InitialBackoff)
	}
	if c.MaxAttempts < 1 {
		c.MaxAttempts = def.MaxAttempts
	}
	if c.MaxAge <= 0 {
		c.MaxAge = def.MaxAge
	}
	s := &Service{
		opts: opts, queue: storage.NewPushQueue(opts.DB), sync: storage.NewSync(opts.DB),
		log:  opts.Logger.With("component", "pusher"),
		wake: make(chan struct{}, 1), sem: make(chan struct{}, maxConcurrent),
		states: map[storage.PusherKey]*pusherState{},
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "myelin_push_deliveries_total",
			Help: "Push gateway deliveries by outcome: sent, retried (a failed attempt to be retried), dropped (given up), rejected (the gateway rejected the pushkey; pusher removed).",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "myelin_push_queue_pending",
			Help: "Notifications queued for delivery to push gateways.",
		}),
		done: make(chan struct{}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.deliveries); err != nil {
			return nil, fmt.Errorf("pusher: register metrics: %w", err)
		}
		if err := opts.Registerer.Register(s.pending); err != nil {
			return nil, fmt.Errorf("pusher: register metrics: %w", err)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	s.Wake()
	return s, nil
}

// Wake tells the service new deliveries may be queued (the notifications
// consumer calls it after each commit that stored notifications). It never
// blocks.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops delivering: requests in flight are abandoned (their rows
// stay queued and go out after the next start; gateways de-duplicate by
// event_id), and it returns once every goroutine has ended.
func (s *Service) Close() error {
	s.cancel()
	<-s.done
	s.wg.Wait()
	s.opts.Client.CloseIdleConnections()
	return nil
}

func (s *Service) run() {
	defer close(s.done)
	// A timer only for backoff: new work arrives through Wake.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		if next := s.dispatch(); !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// dispatch starts a drain for every pusher with queued deliveries that is
// neither draining nor backing off, and returns when the earliest backing
// off one may try again (zero: none).
func (s *Service) dispatch() time.Time {
	pend, err := s.queue.Pending(s.ctx)
	if err != nil {
		if s.ctx.Err() != nil {
			return time.Time{}
		}
		s.log.Error("reading the push queue", "err", err)
		return time.Now().Add(time.Second)
	}
	var total int64
	var next time.Time
	now := time.Now()
	seen := make(map[storage.PusherKey]bool, len(pend))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pend {
		total += p.Queued
		seen[p.PusherKey] = true
		st := s.states[p.PusherKey]
		if st == nil {
			st = &pusherState{}
			s.states[p.PusherKey] = st
		}
		if st.busy {
			continue
		}
		if now.Before(st.notBefore) {
			if next.IsZero() || st.notBefore.Before(next) {
				next = st.notBefore
			}
			continue
		}
		st.busy = true
		s.wg.Add(1)
		go s.drain(p.PusherKey, st)
	}
	for k, st := range s.states {
		if !seen[k] && !st.busy {
			delete(s.states, k)
		}
	}
	s.pending.Set(float64(total))
	return next
}

// drain delivers one pusher's queue in order until it is empty or a
// delivery must wait.
func (s *Service) drain(k storage.PusherKey, st *pusherState) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		st.busy = false
		s.mu.Unlock()
		s.Wake() // rows may have been queued meanwhile; and re-arm the backoff timer
	}()
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	defer func() { <-s.sem }()
	ctx := s.ctx
	if n, err := s.queue.DropOlder(ctx, k, time.Now().Add(-s.opts.Config.MaxAge).UnixMilli()); err != nil {
		s.storageFailed(st, "dropping expired pushes", err)
		return
	} else if n > 0 {
		s.deliveries.WithLabelValues("dropped").Add(float64(n))
		s.log.Warn("push notifications expired undelivered", "user_id", k.UserID, "app_id", k.AppID, "count", n)
	}
	for {
		item, err := s.queue.Next(ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			return
		}
		if err != nil {
			s.storageFailed(st, "reading the push queue", err)
			return
		}
		res := s.deliver(ctx, item)
		if res.outcome == outcomeRetry && ctx.Err() != nil {
			return // shutting down: the attempt does not count
		}
		if res.outcome == outcomeSent {
			// A delivery is recorded even when shutdown began meanwhile:
			// the row must not survive a success and be sent again.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := s.queue.Done(rctx, k, item.EventNID)
			cancel()
			if err != nil {
				s.storageFailed(st, "recording a push", err)
				return
			}
			s.deliveries.WithLabelValues("sent").Inc()
			s.setStreak(st, 0, 0)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		switch res.outcome {
		case outcomeRejected:
			if err := s.queue.RemovePusher(ctx, k); err != nil {
				s.storageFailed(st, "removing a rejected pusher", err)
				return
			}
			s.deliveries.WithLabelValues("rejected").Inc()
			s.log.Info("push gateway rejected the pushkey; pusher removed", "user_id", k.UserID, "app_id", k.AppID)
			return
		case outcomeDropped:
			if err := s.queue.Done(ctx, k, item.EventNID); err != nil {
				s.storageFailed(st, "dropping a push", err)
				return
			}
			s.deliveries.WithLabelValues("dropped").Inc()
			s.log.Warn("push notification dropped", "user_id", k.UserID, "app_id", k.AppID, "reason", res.reason, "status", res.status)
			// The gateway answered (or can never be reached): no backoff.
			s.setStreak(st, 0, 0)
		case outcomeRetry:
			s.deliveries.WithLabelValues("retried").Inc()
			attempts, err := s.queue.Failed(ctx, k, item.EventNID)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.storageFailed(st, "recording a failed push", err)
				return
			}
			s.log.Warn("push delivery failed; will retry", "user_id", k.UserID, "app_id", k.AppID, "reason", res.reason, "status", res.status, "attempts", attempts)
			if attempts >= s.opts.Config.MaxAttempts {
				if err := s.queue.Done(ctx, k, item.EventNID); err != nil {
					s.storageFailed(st, "dropping a push", err)
					return
				}
				s.deliveries.WithLabelValues("dropped").Inc()
				s.log.Warn("push notification given up", "user_id", k.UserID, "app_id", k.AppID, "attempts", attempts)
			}
			s.mu.Lock()
			streak := st.streak + 1
			s.mu.Unlock()
			s.setStreak(st, streak, res.retryAfter)
			return
		}
	}
}

// setStreak records a pusher's consecutive failures and, if any, when it
// may try again: the backoff for that streak, or the gateway's Retry-After
// when longer (both capped).
func (s *Service) setStreak(st *pusherState, streak int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.streak = streak
	if streak == 0 {
		st.notBefore = time.Time{}
		return
	}
	wait := max(backoff(streak, s.opts.Config.InitialBackoff, s.opts.Config.MaxBackoff, rand.Int64N), min(retryAfter, s.opts.Config.MaxBackoff))
	st.notBefore = time.Now().Add(wait)
}

// storageFailed backs a pusher off after a database error: the queue row
// is untouched, so the delivery is tried again later.
func (s *Service) storageFailed(st *pusherState, what string, err error) {
	if s.ctx.Err() != nil {
		return
	}
	s.log.Error(what, "err", err)
	s.mu.Lock()
	streak := st.streak + 1
	s.mu.Unlock()
	s.setStreak(st, streak, 0)
}

// backoff is the wait after streak consecutive failures: initial doubled
// per failure, capped, with "equal jitter" (half fixed, half random) so
// pushers failing together do not retry in lockstep. rnd(n) is uniform in
// [0, n).
func backoff(streak int, initial, capped time.Duration, rnd func(int64) int64) time.Duration {
	d := capped
	if streak <= 30 {
		if x := initial << (streak - 1); x > 0 && x < capped {
			d = x
		}
	}
	half := d / 2
	return half + time.Duration(rnd(int64(d-half)+1))
}

type outcome int

const (
	outcomeSent outcome = iota
	outcomeRetry
	outcomeDropped
	outcomeRejected
)

type result struct {
	outcome    outcome
	reason     string // for logs: never a body
	status     int
	retryAfter time.Duration
}

// deliver sends one queued notification and classifies the answer.
func (s *Service) deliver(ctx context.Context, item storage.QueuedPush) result {
	if item.Kind != "http" {
		return result{outcome: outcomeDropped, reason: "not an http pusher"}
	}
	rawURL, _, _, err := pusherData(item.Data)
	if err != nil {
		return result{outcome: outcomeDropped, reason: err.Error()}
	}
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != notifyPath {
		return result{outcome: outcomeDropped, reason: "pusher URL is not an http(s) " + notifyPath + " URL"}
	}
	ev, err := s.eventInfo(ctx, item.EventNID)
	if errors.Is(err, storage.ErrNotFound) {
		return result{outcome: outcomeDropped, reason: "event not found"}
	}
	if err != nil {
		return result{outcome: outcomeRetry, reason: "reading the event: " + err.Error()}
	}
	unread, err := s.queue.UnreadTotal(ctx, item.UserID)
	if err != nil {
		return result{outcome: outcomeRetry, reason: "reading unread counts: " + err.Error()}
	}
	body, err := buildNotify(ev, item.UserID, device{AppID: item.AppID, PushKey: item.PushKey, Data: item.Data, CreatedTS: item.CreatedTS}, item.Actions, unread)
	if err != nil {
		return result{outcome: outcomeDropped, reason: err.Error()}
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.Config.GatewayTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return result{outcome: outcomeDropped, reason: "bad pusher URL"}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.opts.Client.Do(req)
	if errors.Is(err, outbound.ErrDenied) {
		return result{outcome: outcomeDropped, reason: "push gateway address refused (outbound.allow_networks)"}
	}
	if err != nil {
		// The error text carries the URL, which may hold credentials: the
		// log gets its kind only.
		reason := "connection failed"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = "timeout"
		} else if errors.Is(err, outbound.ErrTooLarge) {
			reason = "answer too large"
		}
		return result{outcome: outcomeRetry, reason: reason}
	}
	defer func() {
		// Drained (bounded) so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxGatewayResponse))
		resp.Body.Close()
	}()
	st := resp.StatusCode
	switch {
	case st >= 200 && st < 300:
		var answer struct {
			Rejected []string `json:"rejected"`
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxGatewayResponse))
		if err == nil && json.Unmarshal(b, &answer) == nil && slices.Contains(answer.Rejected, item.PushKey) {
			return result{outcome: outcomeRejected, status: st}
		}
		// Delivered; an unreadable answer cannot un-deliver it.
		return result{outcome: outcomeSent, status: st}
	case st == http.StatusTooManyRequests:
		return result{outcome: outcomeRetry, status: st, reason: "rate limited", retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	case st >= 500 || st == http.StatusRequestTimeout:
		return result{outcome: outcomeRetry, status: st, reason: "gateway error"}
	default:
		// The gateway refuses this request as such: sending it again would
		// be refused again.
		return result{outcome: outcomeDropped, status: st, reason: "gateway refused the request"}
	}
}

// retryAfter parses a Retry-After header given in seconds (0 if absent or
// in another form).
func retryAfter(h string) time.Duration {
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}

// eventInfo reads an event and, for the full format, the room state at it
// (the sender's display name, the room's name and canonical alias).
func (s *Service) eventInfo(ctx context.Context, nid int64) (eventInfo, error) {
	rows, err := s.sync.EventsByNID(ctx, []int64{nid})
	if err != nil {
		return eventInfo{}, err
	}
	if len(rows) == 0 {
		return eventInfo{}, storage.ErrNotFound
	}
	evs, err := s.opts.Events.EventsFromLog(ctx, rows, nil)
	if err != nil {
		return eventInfo{}, err
	}
	if len(evs) == 0 {
		return eventInfo{}, storage.ErrNotFound
	}
	e := evs[0]
	info := eventInfo{EventID: e.EventID, RoomID: e.RoomID, Type: e.Type, Sender: e.Sender, StateKey: e.StateKey, Content: e.Content}
	entries, err := s.sync.StateAtGroups(ctx, []int64{rows[0].StateGroup}, []string{"m.room.name", "m.room.canonical_alias", "m.room.member"}, []string{e.Sender})
	if err != nil {
		return eventInfo{}, err
	}
	var nids []int64
	for _, en := range entries[rows[0].StateGroup] {
		nids = append(nids, en.EventNID)
	}
	if len(nids) == 0 {
		return info, nil
	}
	srows, err := s.sync.EventsByNID(ctx, nids)
	if err != nil {
		return eventInfo{}, err
	}
	states, err := s.opts.Events.EventsFromLog(ctx, srows, nil)
	if err != nil {
		return eventInfo{}, err
	}
	for _, st := range states {
		var c struct {
			Name        string `json:"name"`
			Alias       string `json:"alias"`
			DisplayName string `json:"displayname"`
		}
		if json.Unmarshal(st.Content, &c) != nil {
			continue
		}
		switch st.Type {
		case "m.room.name":
			info.RoomName = c.Name
		case "m.room.canonical_alias":
			info.RoomAlias = c.Alias
		case "m.room.member":
			info.SenderDisplayName = c.DisplayName
		}
	}
	return info, nil
}
