package roomserver

import (
	"context"
	"fmt"
	"sync"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// checkLog verifies the event log of a room: every event once, positions
// strictly increasing with depth, and every prev_event stored at a lower
// position (stream order is consistent with the DAG).
func checkLog(t *testing.T, s *Service, roomID string) int {
	t.Helper()
	ctx := ctxT(t)
	evs, err := s.RoomEvents(ctx, roomID, 0, s.Notifier().Position(), 1_000_000, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version))
	pos := map[string]int64{}
	var last int64
	for _, e := range evs {
		if _, dup := pos[e.EventID]; dup {
			t.Fatalf("event %s stored twice", e.EventID)
		}
		if e.Position <= last {
			t.Fatalf("positions not increasing: %d after %d", e.Position, last)
		}
		last = e.Position
		pdu, err := verImpl.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pdu.PrevEventIDs() {
			pp, ok := pos[p]
			if !ok {
				t.Fatalf("event %s cites prev_event %s which is not stored before it", e.EventID, p)
			}
			if pp >= e.Position {
				t.Fatalf("prev_event %s at %d is not before %d", p, pp, e.Position)
			}
		}
		pos[e.EventID] = e.Position
	}
	return len(evs)
}

func TestConcurrentSendsOneRoom(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
		senders := 50
		for i := range senders {
			if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: user(fmt.Sprintf("u%d", i))}); err != nil {
				t.Fatal(err)
			}
		}
		before := checkLog(t, s, room)
		const perSender = 10
		ids := make(chan string, senders*perSender)
		var wg sync.WaitGroup
		for i := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u := user(fmt.Sprintf("u%d", i))
				for j := range perSender {
					req := message(room, u, fmt.Sprintf("m%d-%d", i, j))
					req.DeviceID, req.TxnID = "DEV", fmt.Sprintf("t%d", j)
					id, err := s.Send(ctx, req)
					if err != nil {
						t.Errorf("send: %v", err)
						return
					}
					ids <- id
				}
			}()
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for id := range ids {
			if seen[id] {
				t.Fatalf("event ID %s acknowledged twice", id)
			}
			seen[id] = true
		}
		if len(seen) != senders*perSender {
			t.Fatalf("%d acknowledgements, want %d", len(seen), senders*perSender)
		}
		if after := checkLog(t, s, room); after != before+senders*perSender {
			t.Fatalf("room has %d events, want %d", after, before+senders*perSender)
		}
	})
}

func TestConcurrentRooms(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		const rooms, perRoom = 50, 10
		var wg sync.WaitGroup
		roomIDs := make([]string, rooms)
		for i := range rooms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := user(fmt.Sprintf("owner%d", i))
				id, err := s.CreateRoom(ctx, CreateRoomRequest{Creator: owner, Name: sp(fmt.Sprintf("room %d", i))})
				if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				roomIDs[i] = id
				for j := range perRoom {
					if _, err := s.Send(ctx, message(id, owner, fmt.Sprintf("m%d", j))); err != nil {
						t.Errorf("send: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, id := range roomIDs {
			// create, join, power levels, join rules, history visibility,
			// guest access, name + messages
			if n := checkLog(t, s, id); n != 7+perRoom {
				t.Fatalf("room %s has %d events, want %d", id, n, 7+perRoom)
			}
		}
	})
}

func TestDuplicateTxnConcurrently(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		before := checkLog(t, s, room)
		var wg sync.WaitGroup
		ids := make([]string, 20)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := message(room, alice, "once")
				req.DeviceID, req.TxnID = "PHONE", "same-txn"
				id, err := s.Send(ctx, req)
				if err != nil {
					t.Errorf("send: %v", err)
				}
				ids[i] = id
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("retries got different event IDs: %v", ids)
			}
		}
		if n := checkLog(t, s, room); n != before+1 {
			t.Fatalf("%d events stored for one transaction", n-before)
		}
		// Another device with the same txn ID is a different request.
		req := message(room, alice, "other device")
		req.DeviceID, req.TxnID = "LAPTOP", "same-txn"
		if id := mustSend(t, s, req); id == ids[0] {
			t.Fatal("a different device's transaction returned the same event")
		}
	})
}

func TestRestartIdempotency(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			db := e.open(t)
			s := newService(t, db)
			alice := user("alice")
			room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
			req := message(room, alice, "survives restarts")
			req.DeviceID, req.TxnID = "PHONE", "txn-1"
			first := mustSend(t, s, req)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			db = e.reopen(t)
			defer db.Close()
			s = newService(t, db)
			defer s.Close()
			if s.Notifier().Position() == 0 {
				t.Fatal("stream position not restored from the database")
			}
			again := mustSend(t, s, req)
			if again != first {
				t.Fatalf("retry after restart returned %s, want %s", again, first)
			}
			evs, err := s.RoomEvents(context.Background(), room, 0, s.Notifier().Position(), 100, false)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range evs {
				if ev.Type == "m.room.message" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d messages in the room, want 1", n)
			}
			// The restarted service continues the room and the stream.
			next := mustSend(t, s, message(room, alice, "after restart"))
			ev, err := s.GetEvent(context.Background(), room, next, alice)
			if err != nil || ev.Position <= evs[len(evs)-1].Position {
				t.Fatalf("event after restart: %+v %v", ev, err)
			}
			checkLog(t, s, room)
		})
	}
}
