// Package e2ee owns the server side of end-to-end encryption: device
// identity keys, one-time and fallback keys (/keys/upload, /keys/query,
// /keys/claim), cross-signing keys and signatures, server-side key backups
// (/room_keys), send-to-device messages and the device-list stream that
// tells clients whose devices changed (/keys/changes and /sync).
//
// The server never sees a private key or a plaintext: it stores what
// devices publish, checks it is well formed and correctly signed before
// storing it, hands one-time keys out exactly once, and delivers
// to-device messages until the recipient proves it received them.
//
// It speaks Matrix IDs and *apierr.Error, knows nothing about HTTP
// (clientapi decodes requests) and fills its parts of /sync through
// syncapi's provider interfaces. See README.md for the invariants.
package e2ee

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Options configure a Service. DB and ServerName are required.
type Options struct {
	DB         *storage.DB
	ServerName string
	// TxnRetention is how long /sendToDevice transaction IDs are
	// remembered (7 days when zero).
	TxnRetention time.Duration
	// Now is the clock (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is the E2EE component. It is safe for concurrent use.
type Service struct {
	store  *storage.Keys
	server string
	now    func() time.Time
	log    *slog.Logger
	txnTTL time.Duration

	// Published stream positions: every row at or below them is committed.
	toDevicePos   atomic.Int64
	deviceListPos atomic.Int64

	wake atomic.Pointer[func(userIDs ...string)]
}

// New builds the service on a migrated database.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.ServerName == "" {
		return nil, errors.New("e2ee: DB and ServerName are required")
	}
	if opts.TxnRetention <= 0 {
		opts.TxnRetention = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Service{store: storage.NewKeys(opts.DB), server: opts.ServerName, now: opts.Now, log: opts.Logger, txnTTL: opts.TxnRetention}
	ctx := context.Background()
	for stream, dst := range map[string]*atomic.Int64{storage.StreamToDevice: &s.toDevicePos, storage.StreamDeviceLists: &s.deviceListPos} {
		pos, err := s.store.StreamPosition(ctx, stream)
		if err != nil {
			return nil, fmt.Errorf("e2ee: %w", err)
		}
		dst.Store(pos)
	}
	return s, nil
}

// SetWaker registers the function that wakes users' long-polling /sync
// requests (syncapi's Wake), called after every commit that concerns them.
func (s *Service) SetWaker(fn func(userIDs ...string)) { s.wake.Store(&fn) }

func (s *Service) wakeUsers(userIDs ...string) {
	if fn := s.wake.Load(); fn != nil && len(userIDs) > 0 {
		(*fn)(userIDs...)
	}
}

// publish raises a published position to pos (never lowers it: writers
// finish in any order, but commits happened in position order).
func publish(p *atomic.Int64, pos int64) {
	for {
		cur := p.Load()
		if pos <= cur || p.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// userID is the Matrix ID of a local localpart.
func (s *Service) userID(localpart string) string { return "@" + localpart + ":" + s.server }

// localpart returns the localpart of a local user ID.
func (s *Service) localpart(userID string) (string, bool) {
	rest, ok := strings.CutPrefix(userID, "@")
	if !ok {
		return "", false
	}
	local, domain, ok := strings.Cut(rest, ":")
	if !ok || local == "" || domain != s.server {
		return "", false
	}
	return local, true
}

// validUserID checks the shape of a user ID: "@", a localpart, ":", a
// server name; at most 255 bytes.
func validUserID(u string) bool {
	if len(u) > 255 || !strings.HasPrefix(u, "@") {
		return false
	}
	local, server, ok := strings.Cut(u[1:], ":")
	return ok && local != "" && server != "" && validID(u)
}

// serverOf is the server name of a user ID that passed validUserID.
func serverOf(userID string) string {
	_, server, _ := strings.Cut(userID, ":")
	return server
}

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

// internal wraps an unexpected storage failure with context; the HTTP
// edge logs it and answers 500.
func internal(op string, err error) error { return fmt.Errorf("e2ee: %s: %w", op, err) }

// deviceListChanged publishes a device-list position and wakes everyone
// who tracks the changed users' devices: the users themselves and those
// they share a room with.
func (s *Service) deviceListChanged(ctx context.Context, pos int64, localparts ...string) {
	if pos == 0 {
		return
	}
	publish(&s.deviceListPos, pos)
	seen := map[string]bool{}
	var users []string
	for _, l := range localparts {
		u := s.userID(l)
		if seen[u] {
			continue
		}
		seen[u] = true
		users = append(users, u)
		peers, err := s.store.RoomPeers(ctx, u)
		if err != nil {
			// The change is committed; only the early wake-up is lost, and
			// the next sync of each peer reports it.
			s.log.Warn("e2ee: listing room peers to wake", "err", err)
			continue
		}
		for _, p := range peers {
			if !seen[p] {
				seen[p] = true
				users = append(users, p)
			}
		}
	}
	s.wakeUsers(users...)
}

// DevicesRemoved is account's hook (account.WithDevicesRemoved): devices
// of localpart were deleted, and their keys with them in the same
// transaction, which recorded a device-list change when they had keys.
// It publishes the stream's committed position (which covers that change)
// and wakes the users who track localpart's devices. Should it fail, the
// change is still committed and the next write publishes past it.
func (s *Service) DevicesRemoved(localpart string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pos, err := s.store.StreamPosition(ctx, storage.StreamDeviceLists)
	if err != nil {
		s.log.Warn("e2ee: reading the device-list position after a device deletion", "err", err)
		return
	}
	s.deviceListChanged(ctx, pos, localpart)
}

// errNotLocal is the answer for operations on another server's users,
// which need federation.
var errNotLocal = apierr.Forbidden("Only users of this server can be addressed")
