package roomserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"myelin/storage"
)

// txnKey identifies a client transaction: per device and per endpoint
// (the spec scopes transaction IDs to a device and an HTTP path).
type txnKey struct {
	user, device, scope, txn string
}

// pendingTxn is a transaction handed to the writer and not yet committed;
// a retry arriving meanwhile waits for it instead of sending twice.
type pendingTxn struct {
	done    chan struct{}
	eventID string
	err     error
}

// outcome is what an op produced.
type outcome struct {
	eventIDs []string
	// prepare adjusts the storage write (new room row, aliases, ...).
	prepare  func(rw *storage.RoomWrite)
	isolated bool
	txn      *txnKey     // the request's transaction, registered as pending
	wait     *pendingTxn // the result is that of an in-flight duplicate
	// created installs the overlay as the worker's state (room creation).
	created bool
}

// opFunc runs on the room's worker goroutine with the room's state overlay
// t (t.base is nil when the room does not exist). Events built on t are
// committed together; an error discards them.
type opFunc func(ctx context.Context, t *stateTxn) (outcome, error)

type op struct {
	ctx  context.Context
	fn   opFunc
	done chan opResult
}

type opResult struct {
	eventIDs []string
	wait     *pendingTxn
	err      error
}

// roomWorker is the ordered input of one active room: one goroutine that
// runs the room's requests in arrival order. It exits when idle, after all
// of its writes have been committed, so a successor never loads a state
// that is missing an in-flight event.
type roomWorker struct {
	svc    *Service
	roomID string
	queue  chan *op
	refs   atomic.Int64 // ops dispatched and not yet dequeued

	state   *roomState // nil: not loaded, or the room does not exist
	loaded  bool
	gen     uint64
	failed  atomic.Uint64 // 1 + highest generation with a failed write; 0 none
	pending sync.Map      // txnKey → *pendingTxn
	// inflight counts writes handed to the writer and not yet answered.
	inflight sync.WaitGroup
}

func (w *roomWorker) markFailed(gen uint64) {
	for {
		cur := w.failed.Load()
		if cur >= gen+1 || w.failed.CompareAndSwap(cur, gen+1) {
			return
		}
	}
}

func (w *roomWorker) hasFailed(gen uint64) bool { return w.failed.Load() >= gen+1 }

func (w *roomWorker) run() {
	defer w.svc.workerWG.Done()
	idle := time.NewTimer(w.svc.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case o := <-w.queue:
			w.refs.Add(-1)
			w.handle(o)
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(w.svc.cfg.IdleTimeout)
		case <-idle.C:
			if w.tryExit() {
				return
			}
			idle.Reset(w.svc.cfg.IdleTimeout)
		case <-w.svc.quit:
			// Shutdown: finish what was dispatched, then leave.
			// refs can also drop when a dispatcher gives up, so wait with a
			// short timeout rather than blocking on the queue.
			for w.refs.Load() > 0 {
				select {
				case o := <-w.queue:
					w.refs.Add(-1)
					w.handle(o)
				case <-time.After(10 * time.Millisecond):
				}
			}
			w.inflight.Wait()
			w.svc.mu.Lock()
			delete(w.svc.workers, w.roomID)
			w.svc.mu.Unlock()
			return
		}
	}
}

// tryExit retires the worker if nothing is queued or in flight.
func (w *roomWorker) tryExit() bool {
	w.inflight.Wait()
	w.svc.mu.Lock()
	defer w.svc.mu.Unlock()
	if w.refs.Load() > 0 {
		return false
	}
	delete(w.svc.workers, w.roomID)
	return true
}

func (w *roomWorker) handle(o *op) {
	if err := o.ctx.Err(); err != nil {
		o.done <- opResult{err: err}
		return
	}
	if w.hasFailed(w.gen) {
		// An earlier write of this room failed: everything built on it has
		// failed too. Start again from what the database holds.
		w.inflight.Wait()
		w.gen = w.failed.Load()
		w.state, w.loaded = nil, false
	}
	if !w.loaded {
		st, err := loadRoomState(o.ctx, w.svc.store, w.roomID)
		switch {
		case err == nil:
			w.state, w.loaded = st, true
		case errors.Is(err, storage.ErrNotFound):
			w.state, w.loaded = nil, true
		default:
			o.done <- opResult{err: fmt.Errorf("load room: %w", err)}
			return
		}
	}
	t := w.svc.newTxn(o.ctx, w.state)
	t.worker = w
	out, err := o.fn(o.ctx, t)
	if err != nil {
		o.done <- opResult{err: err}
		return
	}
	if out.wait != nil || len(t.events) == 0 {
		o.done <- opResult{eventIDs: out.eventIDs, wait: out.wait}
		return
	}
	var pt *pendingTxn
	if out.txn != nil {
		pt = &pendingTxn{done: make(chan struct{}), eventID: t.events[len(t.events)-1].pdu.EventID()}
		w.pending.Store(*out.txn, pt)
	}
	ids := out.eventIDs
	reply := func(err error) {
		if pt != nil {
			pt.err = err
			w.pending.Delete(*out.txn)
			close(pt.done)
		}
		o.done <- opResult{eventIDs: ids, err: err}
		w.inflight.Done()
	}
	w.inflight.Add(1)
	err = w.svc.writer.submit(w, w.gen, len(t.events), func(first int64) *storage.RoomWrite {
		rw := t.toWrite(first)
		rw.Isolated = out.isolated
		if out.prepare != nil {
			out.prepare(rw)
		}
		return rw
	}, reply)
	if err != nil {
		reply(err)
		return
	}
	if out.created || w.state == nil {
		w.state = t.newRoomState()
	} else {
		t.commitTo(w.state)
	}
}

// pendingFor returns the in-flight transaction for key, if any.
func (w *roomWorker) pendingFor(key txnKey) *pendingTxn {
	if v, ok := w.pending.Load(key); ok {
		return v.(*pendingTxn)
	}
	return nil
}

// do runs fn on roomID's worker and waits for its events to be committed.
func (s *Service) do(ctx context.Context, roomID string, fn opFunc) ([]string, error) {
	w, err := s.acquire(roomID)
	if err != nil {
		return nil, err
	}
	o := &op{ctx: ctx, fn: fn, done: make(chan opResult, 1)}
	select {
	case w.queue <- o:
	case <-ctx.Done():
		w.refs.Add(-1)
		return nil, ctx.Err()
	}
	var res opResult
	select {
	case res = <-o.done:
	case <-ctx.Done():
		// The request may still complete; a retry with the same
		// transaction ID will find it.
		return nil, ctx.Err()
	}
	if res.wait != nil {
		select {
		case <-res.wait.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if res.wait.err != nil {
			return nil, res.wait.err
		}
		return []string{res.wait.eventID}, nil
	}
	return res.eventIDs, res.err
}

// acquire returns the room's worker, starting one if needed, with a
// reference held so it cannot exit before the op is queued.
func (s *Service) acquire(roomID string) (*roomWorker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	w := s.workers[roomID]
	if w == nil {
		w = &roomWorker{svc: s, roomID: roomID, queue: make(chan *op, s.cfg.QueueSize)}
		s.workers[roomID] = w
		s.workerWG.Add(1)
		go w.run()
	}
	w.refs.Add(1)
	return w, nil
}
