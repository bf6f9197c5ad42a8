package roomserver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchService is a service on a fresh SQLite database with the default
// (durable, synchronous=FULL) settings.
func benchService(b *testing.B) *Service {
	return benchServiceOn(b, sqliteEngine(b))
}

func benchServiceOn(b *testing.B, e engine) *Service {
	b.Helper()
	db := e.open(b)
	s := newService(b, db)
	b.Cleanup(func() {
		s.Close()
		db.Close()
	})
	return s
}

// BenchmarkSend measures event build + auth + persist: one send at a time
// on SQLite (each waits for its own fsync), and 8 concurrent senders whose
// events share commits (group commit) on SQLite and PostgreSQL (fsync on).
func BenchmarkSend(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s := benchService(b)
		alice := user("alice")
		room := mustCreate(b, s, CreateRoomRequest{Creator: alice})
		ctx := context.Background()
		req := message(room, alice, "The 3pm appointment for Biscuit is confirmed; please bring the vaccination card.")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Send(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		engine string
		rooms  int
	}{{"sqlite", 1}, {"sqlite", 8}, {"postgres", 1}, {"postgres", 8}} {
		b.Run(fmt.Sprintf("concurrent-8/%s/rooms-%d", c.engine, c.rooms), func(b *testing.B) {
			rooms := c.rooms
			e := sqliteEngine(b)
			if c.engine == "postgres" {
				e = postgresEngine()
			}
			s := benchServiceOn(b, e)
			alice := user("alice")
			ids := make([]string, rooms)
			for i := range ids {
				ids[i] = mustCreate(b, s, CreateRoomRequest{Creator: alice})
			}
			ctx := context.Background()
			b.ReportAllocs()
			var n atomic.Int64
			start := time.Now()
			for b.Loop() {
				// Each iteration is a burst of 8 concurrent sends.
				var wg sync.WaitGroup
				for g := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						req := message(ids[g%rooms], alice, "Biscuit's results are back; all normal.")
						if _, err := s.Send(ctx, req); err != nil {
							b.Error(err)
						}
						n.Add(1)
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(n.Load()), "ns/event")
		})
	}
}

// BenchmarkBuildAuth is the CPU part alone: build, hash, sign and authorise
// a message on a loaded room state, without storing it.
func BenchmarkBuildAuth(b *testing.B) {
	s := benchService(b)
	alice := user("alice")
	room := mustCreate(b, s, CreateRoomRequest{Creator: alice})
	ctx := context.Background()
	st, err := loadRoomState(ctx, s.store, room)
	if err != nil {
		b.Fatal(err)
	}
	content := raw(map[string]any{"msgtype": "m.text", "body": "Biscuit's results are back; all normal."})
	b.ReportAllocs()
	for b.Loop() {
		t := s.newTxn(ctx, st)
		if _, err := t.build(proto{sender: alice, typ: "m.room.message", content: content}, &builtEvent{}); err != nil {
			b.Fatal(err)
		}
	}
}
