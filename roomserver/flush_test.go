package roomserver

import (
	"context"
	"testing"
)

// On SQLite at the default durability the writer's commits wait for a
// separate log flush (writer.flusher). A send is answered and announced
// only after that flush; when the flush fails the send fails, /sync is
// not told, and every later send fails too (DB.FlushLog stays failed).
func TestSendWaitsForLogFlush(t *testing.T) {
	e := sqliteEngine(t)
	db := e.open(t)
	t.Cleanup(func() { db.Close() })
	s := newService(t, db)
	t.Cleanup(func() { s.Close() })
	if s.writer.flushing == nil {
		t.Fatal("SQLite at full durability has no flush stage")
	}
	alice := user("alice")
	room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
	mustSend(t, s, message(room, alice, "flushed"))
	before := s.Notifier().Position()

	// A log path that cannot be opened for writing fails the flush.
	db.WALPath = t.TempDir()
	if _, err := s.Send(ctxT(t), message(room, alice, "not known to be on disk")); err == nil {
		t.Fatal("send answered although its flush failed")
	}
	if got := s.Notifier().Position(); got != before {
		t.Fatalf("notifier moved to %d (from %d) for an unflushed event", got, before)
	}
	db.WALPath = ""
	if err := db.FlushLog(); err == nil {
		t.Fatal("FlushLog recovered after a failed fsync; it must stay failed until restart")
	}
	if _, err := s.Send(context.Background(), message(room, alice, "after the failure")); err == nil {
		t.Fatal("send answered after a failed flush")
	}
}
