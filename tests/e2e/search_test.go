package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// searchAll pages through /search with next_batch and returns every result
// event ID in order.
func searchAll(t *testing.T, c *mautrix.Client, req mautrix.ReqSearch) ([]id.EventID, int) {
	t.Helper()
	var out []id.EventID
	count := -1
	for pages := 0; pages < 100; pages++ {
		resp, err := c.Search(context.Background(), &req)
		if err != nil {
			t.Fatalf("search %q: %v", req.SearchTerm, err)
		}
		if count < 0 {
			count = resp.Count
		}
		for _, r := range resp.Results {
			out = append(out, r.Event.ID)
		}
		if resp.NextBatch == "" {
			return out, count
		}
		req.NextBatch = resp.NextBatch
	}
	t.Fatalf("search %q: no end after 100 pages", req.SearchTerm)
	return nil, 0
}

// TestSearchLargeRoom: /search finds a word among 10,000 messages, ranks
// the best match first, pages with next_batch without repeats, and never
// returns an event from a room the searcher cannot read (a room they are
// not in, a room after they left, joined-only history before their join).
func TestSearchLargeRoom(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")

		big, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Ward rounds"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, big.RoomID); err != nil {
			t.Fatal(err)
		}

		// 10,000 messages from 64 concurrent senders (the roomserver
		// commits concurrent sends to one room in shared transactions).
		// Every 1000th mentions parvovirus; one mentions it three times.
		const total, workers = 10000, 64
		start := time.Now()
		var mu sync.Mutex
		want := map[id.EventID]bool{}
		var best id.EventID
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < total; i += workers {
					body := fmt.Sprintf("routine note %d about kennel %d", i, i%37)
					switch {
					case i == 4321:
						body = "parvovirus parvovirus parvovirus: isolate kennel 4"
					case i%1000 == 0:
						body = fmt.Sprintf("routine note %d: parvovirus test negative", i)
					}
					resp, err := alice.c.SendMessageEvent(ctx, big.RoomID, event.EventMessage,
						map[string]any{"msgtype": "m.text", "body": body})
					if err != nil {
						errs <- fmt.Errorf("send %d: %w", i, err)
						return
					}
					if i == 4321 || i%1000 == 0 {
						mu.Lock()
						want[resp.EventID] = true
						if i == 4321 {
							best = resp.EventID
						}
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		t.Logf("%s: sent %d messages in %v", engine, total, time.Since(start).Round(time.Millisecond))

		// Rooms bob cannot read, each with the same word.
		private, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		forbidden := []id.EventID{sendText(t, alice, private.RoomID, "parvovirus in a room bob is not in")}
		left, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, left.RoomID); err != nil {
			t.Fatal(err)
		}
		beforeLeave := sendText(t, alice, left.RoomID, "parvovirus while bob is here")
		if _, err := bob.c.LeaveRoom(ctx, left.RoomID); err != nil {
			t.Fatal(err)
		}
		forbidden = append(forbidden, sendText(t, alice, left.RoomID, "parvovirus after bob left"))
		joinedOnly, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
			Type: event.StateHistoryVisibility, StateKey: new(string),
			Content: event.Content{Parsed: &event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityJoined}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		forbidden = append(forbidden, sendText(t, alice, joinedOnly.RoomID, "parvovirus before bob joined"))
		if _, err := bob.c.JoinRoomByID(ctx, joinedOnly.RoomID); err != nil {
			t.Fatal(err)
		}
		afterJoin := sendText(t, alice, joinedOnly.RoomID, "parvovirus after bob joined")
		want[beforeLeave], want[afterJoin] = true, true

		step(t, "rank and paginate", func(t *testing.T) {
			start := time.Now()
			got, count := searchAll(t, bob.c, mautrix.ReqSearch{SearchTerm: "parvovirus", Filter: &mautrix.FilterPart{Limit: 3}})
			t.Logf("%s: %d results in %v", engine, len(got), time.Since(start).Round(time.Millisecond))
			if len(got) == 0 || got[0] != best {
				t.Fatalf("best match not first: %v (want %s)", got, best)
			}
			seen := map[id.EventID]bool{}
			for _, e := range got {
				if seen[e] {
					t.Fatalf("%s returned twice", e)
				}
				seen[e] = true
				if slices.Contains(forbidden, e) {
					t.Fatalf("bob got %s from a room he may not read", e)
				}
			}
			if len(seen) != len(want) {
				t.Fatalf("got %d results, want %d", len(seen), len(want))
			}
			for e := range want {
				if !seen[e] {
					t.Fatalf("missing %s", e)
				}
			}
			if count < len(want) {
				t.Fatalf("count %d < %d", count, len(want))
			}
		})

		step(t, "recent order", func(t *testing.T) {
			got, _ := searchAll(t, bob.c, mautrix.ReqSearch{SearchTerm: "parvovirus", OrderBy: "recent", Filter: &mautrix.FilterPart{Limit: 5}})
			if len(got) != len(want) || got[0] != afterJoin || got[1] != beforeLeave {
				t.Fatalf("recent order %v", got)
			}
		})

		step(t, "a common word across the whole room", func(t *testing.T) {
			start := time.Now()
			resp, err := bob.c.Search(ctx, &mautrix.ReqSearch{SearchTerm: "routine note", Filter: &mautrix.FilterPart{Rooms: []id.RoomID{big.RoomID}}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: common word, first page in %v", engine, time.Since(start).Round(time.Millisecond))
			if resp.Count != total-1 || len(resp.Results) != 10 || resp.NextBatch == "" {
				t.Fatalf("count %d, %d results, next_batch %q", resp.Count, len(resp.Results), resp.NextBatch)
			}
		})

		step(t, "context around a result", func(t *testing.T) {
			resp, err := bob.c.Search(ctx, &mautrix.ReqSearch{SearchTerm: "isolate",
				EventContext: mautrix.SearchEventContext{BeforeLimit: 2, AfterLimit: 2}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Results) != 1 || resp.Results[0].Event.ID != best || resp.Results[0].Context == nil ||
				len(resp.Results[0].Context.EventsBefore) != 2 || len(resp.Results[0].Context.EventsAfter) != 2 {
				t.Fatalf("context result %+v", resp.Results)
			}
		})

		step(t, "invalid next_batch", func(t *testing.T) {
			_, err := bob.c.Search(ctx, &mautrix.ReqSearch{SearchTerm: "parvovirus", NextBatch: "not-a-token"})
			wantMatrixErr(t, "search with a bad next_batch", err, 400, "M_INVALID_PARAM")
		})
	})
}
