// Package roomserver owns room events: it is their only writer. Every
// event — built for a local client or, later, received over federation —
// enters through a per-room ordered worker, is checked by the authorisation
// rules against the room state before it, and is stored once, with its
// state delta, the room's current state and its global stream position, in
// one transaction shared with other rooms' writes (group commit). After the
// commit the Notifier advances; /sync and every durable consumer wait on it.
//
// gomatrixserverlib builds, hashes, signs and redacts events; its types stay
// inside this package. The rest of the server reads rooms through Room,
// Event and the read methods of Service. See README.md for the invariants.
package roomserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"myelin/storage"
)

// Config configures a Service. ServerName, KeyID and SigningKey are
// required; the rest have defaults.
type Config struct {
	ServerName string
	// KeyID names the signing key: "ed25519:<id>".
	KeyID      string
	SigningKey ed25519.PrivateKey
	// DefaultRoomVersion is used by CreateRoom when the request names none.
	// One of CreatableRoomVersions; "12" when empty.
	DefaultRoomVersion string
	// IdleTimeout retires a room's worker after this long without input
	// (30s when zero).
	IdleTimeout time.Duration
	// QueueSize bounds each room's input queue; callers wait (or give up
	// with their context) when it is full. 256 when zero.
	QueueSize int
	// MaxBatch bounds how many requests one commit carries (512 when zero).
	MaxBatch int
	// TxnRetention is how long client transaction IDs are remembered
	// (7 days when zero). Retries come within minutes; a week is generous.
	TxnRetention time.Duration
	// Now is the clock (time.Now when nil); tests pin it.
	Now    func() time.Time
	Logger *slog.Logger
}

// CreatableRoomVersions are the room versions this server builds events
// for: event format 2 with URL-safe reference-hash IDs, so 9 builds like
// 10 (its differences — string power levels tolerated, no
// knock_restricted — are auth rules, which cover 1–12). 9 is offered for
// clients and tests that ask for it explicitly (upgrades to it included);
// the default stays 12. Rooms of every version 1–12 can be read and
// authorised.
var CreatableRoomVersions = []string{"9", "10", "11", "12"}

// Service is the roomserver.
type Service struct {
	cfg      Config
	db       *storage.DB
	store    *storage.Rooms
	writer   *writer
	notifier *Notifier
	members  MembershipClock
	recent   *recentRooms
	txns     *txnFilter
	log      *slog.Logger

	roomNIDs atomic.Int64
	// lastCreateMS is the origin_server_ts of the newest create event built
	// here. A v12 room ID is the hash of its create event, so two identical
	// createRoom requests by one user in the same millisecond would otherwise
	// produce the same room ID; create timestamps are kept strictly increasing.
	lastCreateMS atomic.Int64
	groupIDs     atomic.Int64

	mu       sync.Mutex
	workers  map[string]*roomWorker
	closed   bool
	quit     chan struct{}
	workerWG sync.WaitGroup
	bgWG     sync.WaitGroup

	roomIDs sync.Map // room NID → room ID, for turning rows into events
}

// New starts the roomserver on a migrated database.
func New(db *storage.DB, cfg Config) (*Service, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	store := storage.NewRooms(db)
	maxEvent, maxGroup, maxRoom, err := store.MaxIDs(context.Background())
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, db: db, store: store, log: cfg.Logger,
		notifier: newNotifier(maxEvent),
		workers:  map[string]*roomWorker{},
		quit:     make(chan struct{}),
	}
	err = store.TxnKeys(context.Background(), func(n int) { s.txns = newTxnFilter(n) },
		func(user, device string, room int64, scope, txn string) {
			s.txns.add(txnKey{user: user, device: device, scope: scope, txn: txn}, room)
		})
	if err != nil {
		return nil, err
	}
	s.roomNIDs.Store(maxRoom)
	s.groupIDs.Store(maxGroup)
	s.members.last.Store(maxEvent)
	s.recent = newRecentRooms(maxEvent)
	s.writer = newWriter(store, s.notifier, &s.members, s.recent, s.log, maxEvent, cfg.MaxBatch)
	s.bgWG.Add(1)
	go s.pruneTxns()
	return s, nil
}

func (c *Config) fill() error {
	var errs []error
	if c.ServerName == "" {
		errs = append(errs, errors.New("roomserver: ServerName is required"))
	}
	if !strings.HasPrefix(c.KeyID, "ed25519:") || len(c.KeyID) == len("ed25519:") {
		errs = append(errs, errors.New(`roomserver: KeyID must be "ed25519:<id>"`))
	}
	if len(c.SigningKey) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("roomserver: SigningKey must be an ed25519 private key"))
	}
	if c.DefaultRoomVersion == "" {
		c.DefaultRoomVersion = "12"
	}
	if !creatable(c.DefaultRoomVersion) {
		errs = append(errs, fmt.Errorf("roomserver: default room version %q is not one of %v", c.DefaultRoomVersion, CreatableRoomVersions))
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 256
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.TxnRetention <= 0 {
		c.TxnRetention = 7 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

func creatable(v string) bool {
	for _, c := range CreatableRoomVersions {
		if c == v {
			return true
		}
	}
	return false
}

// Close finishes every request already dispatched, commits it, and stops.
// Requests after Close fail.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	s.workerWG.Wait()
	s.writer.close()
	s.bgWG.Wait()
	return s.store.Close()
}

// Notifier is the stream-position broadcaster /sync and consumers wait on.
func (s *Service) Notifier() *Notifier { return s.notifier }

// ServerName is the server's name, the domain of its users and aliases.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// RoomVersions reports the default room version and every version the
// server can create, each "stable" (for /capabilities).
func (s *Service) RoomVersions() (def string, available map[string]string) {
	available = map[string]string{}
	for _, v := range CreatableRoomVersions {
		if gmsl.StableRoomVersion(gmsl.RoomVersion(v)) {
			available[v] = "stable"
		} else {
			available[v] = "unstable"
		}
	}
	return s.cfg.DefaultRoomVersion, available
}

func (s *Service) pruneTxns() {
	defer s.bgWG.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			before := s.cfg.Now().Add(-s.cfg.TxnRetention).UnixMilli()
			if _, err := s.store.PruneTxns(context.Background(), before); err != nil {
				s.log.Warn("pruning transaction IDs failed", "err", err)
			}
		}
	}
}

// createTime returns now, or 1 ms after the previous create event's
// timestamp when that is not earlier, so no two create events built by this
// process share a timestamp (see lastCreateMS).
func (s *Service) createTime(now time.Time) time.Time {
	for {
		last := s.lastCreateMS.Load()
		ms := now.UnixMilli()
		if ms <= last {
			ms = last + 1
		}
		if s.lastCreateMS.CompareAndSwap(last, ms) {
			return time.UnixMilli(ms)
		}
	}
}
