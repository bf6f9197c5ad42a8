package roomserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"myelin/storage"
)

// errRoomReset fails a write that was built on top of an earlier write of
// the same room that failed to commit; the room's worker reloads its state
// from the database before taking more input.
var errRoomReset = errors.New("room state was reset after a failed write")

var errClosed = errors.New("roomserver is closed")

// pendingWrite is one request's RoomWrite waiting for the writer.
type pendingWrite struct {
	rw    *storage.RoomWrite
	owner *roomWorker // nil for writes outside a room worker
	gen   uint64
	last  int64 // highest stream position in the write
	reply func(error)
	err   error
}

// writer is the single writer of the event log. It numbers writes in
// submission order (stream positions are handed out under the same lock
// that queues the write, so queue order is position order) and commits
// whatever has queued up while the previous commit ran, many rooms per
// transaction: concurrent sends share one commit and one fsync.
//
// Where a commit does not flush itself (SQLite at the default durability,
// storage.Rooms.CommitsUnflushed) the fsync runs in a second stage, the
// flusher: the writer commits batch n+1 while the flusher flushes batch n,
// and one fsync covers every batch committed before it started. Nothing of
// a batch is acknowledged or announced to /sync before its flush, so an
// acknowledged event survives a power loss exactly as with
// synchronous=FULL; the single writer connection just no longer sits idle
// through the fsync.
type writer struct {
	store    *storage.Rooms
	notifier *Notifier
	members  *MembershipClock
	recent   *recentRooms
	log      *slog.Logger
	maxBatch int

	mu      sync.Mutex
	queue   []*pendingWrite
	next    int64 // last stream position handed out
	closed  bool
	wake    chan struct{}
	stopped chan struct{}

	// flushing is nil where commits flush themselves.
	flushing *flusher
}

// flusher is the writer's second stage: committed batches waiting for the
// log flush that makes them durable, in commit order.
type flusher struct {
	mu      sync.Mutex
	batches [][]*pendingWrite
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
}

func newWriter(store *storage.Rooms, n *Notifier, members *MembershipClock, recent *recentRooms, log *slog.Logger, lastPos int64, maxBatch int) *writer {
	w := &writer{store: store, notifier: n, members: members, recent: recent, log: log, maxBatch: maxBatch, next: lastPos,
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	if store.CommitsUnflushed() {
		w.flushing = &flusher{wake: make(chan struct{}, 1), stopped: make(chan struct{})}
		go w.runFlusher()
	}
	go w.run()
	return w
}

// submit queues a write of n events. build receives the first stream
// position and returns the write; it runs under the queue lock, so it must
// only copy. reply is called once, after the commit (or its failure).
func (w *writer) submit(owner *roomWorker, gen uint64, n int, build func(first int64) *storage.RoomWrite, reply func(error)) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errClosed
	}
	first := w.next + 1
	w.next += int64(n)
	pw := &pendingWrite{rw: build(first), owner: owner, gen: gen, last: w.next, reply: reply}
	w.queue = append(w.queue, pw)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// close stops the writer after it has committed everything queued.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.stopped
}

func (w *writer) run() {
	defer close(w.stopped)
	if f := w.flushing; f != nil {
		// Stop the flusher after the last commit, and wait for it: close
		// returns only once every queued write has been answered.
		defer func() {
			f.mu.Lock()
			f.closed = true
			f.mu.Unlock()
			f.signal()
			<-f.stopped
		}()
	}
	for {
		w.mu.Lock()
		n := min(len(w.queue), w.maxBatch)
		batch := w.queue[:n:n]
		w.queue = w.queue[n:]
		closed := w.closed
		w.mu.Unlock()
		if n == 0 {
			if closed {
				return
			}
			<-w.wake
			continue
		}
		w.commit(batch)
	}
}

// commit applies a batch in one transaction. Writes of a room whose earlier
// write failed are skipped; an isolated write's own failure only fails it
// (and resets its room); any other failure fails the whole batch.
func (w *writer) commit(batch []*pendingWrite) {
	ctx := context.Background()
	failAll := func(err error) {
		for _, pw := range batch {
			if pw.err == nil {
				pw.err = err
			}
			if pw.owner != nil {
				pw.owner.markFailed(pw.gen)
			}
		}
	}
	wtx, err := w.store.Begin(ctx)
	if err != nil {
		failAll(err)
	} else {
		for _, pw := range batch {
			if pw.owner != nil && pw.owner.hasFailed(pw.gen) {
				pw.err = errRoomReset
				continue
			}
			if aerr := wtx.Apply(pw.rw); aerr != nil {
				if pw.rw.Isolated {
					pw.err = aerr
					if pw.owner != nil {
						pw.owner.markFailed(pw.gen)
					}
					continue
				}
				_ = wtx.Rollback()
				err = fmt.Errorf("apply room write: %w", aerr)
				break
			}
		}
		if err == nil {
			err = wtx.Commit()
		}
		if err != nil {
			w.log.Error("room batch failed", "events", len(batch), "err", err)
			failAll(err)
		} else {
			w.noteMemberships(batch)
			w.recent.note(batch)
			if f := w.flushing; f != nil {
				f.mu.Lock()
				f.batches = append(f.batches, batch)
				f.mu.Unlock()
				f.signal()
				return
			}
			w.notifier.advance(batch[len(batch)-1].last)
		}
	}
	for _, pw := range batch {
		pw.reply(pw.err)
	}
}

// noteMemberships moves the membership clock past the batch's committed
// membership events; before the batch is announced, so a reader that sees
// its position also sees the clock moved.
func (w *writer) noteMemberships(batch []*pendingWrite) {
	var last int64
	for _, pw := range batch {
		if pw.err != nil {
			continue
		}
		for i := range pw.rw.Events {
			if pw.rw.Events[i].Membership != "" {
				last = max(last, pw.rw.Events[i].NID)
			}
		}
	}
	if last > 0 {
		w.members.changed(last)
	}
}

func (f *flusher) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// runFlusher flushes the log for every batch committed before the flush
// began, then announces and answers them. A failed flush fails its writes
// (committed, but not known to be on disk) and every later one: DB.FlushLog
// stays failed until a restart.
func (w *writer) runFlusher() {
	f := w.flushing
	defer close(f.stopped)
	for {
		f.mu.Lock()
		batches := f.batches
		f.batches = nil
		closed := f.closed
		f.mu.Unlock()
		if len(batches) == 0 {
			if closed {
				return
			}
			<-f.wake
			continue
		}
		err := w.store.FlushLog()
		if err != nil {
			w.log.Error("event log flush failed; committed events are not acknowledged", "err", err)
		} else {
			last := batches[len(batches)-1]
			w.notifier.advance(last[len(last)-1].last)
		}
		for _, batch := range batches {
			for _, pw := range batch {
				if err != nil && pw.err == nil {
					pw.err = err
				}
				pw.reply(pw.err)
			}
		}
	}
}
