package syncapi

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkSendToSyncLatency measures send→sync delivery: a long-polling
// /sync is parked, a message is sent through the roomserver, and the
// clock stops when the /sync returns with it. It reports the median, 99th
// percentile and mean latency per engine.
func BenchmarkSendToSyncLatency(b *testing.B) {
	for i, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			// A fresh database per run: the benchmark function runs more
			// than once and each run's database ends with it.
			e := &env{open: engines(b)[i].open}
			e.start(b)
			defer e.stop()
			alice, bob := user("alice"), user("bob")
			room := e.room(alice, "Bench", bob)
			since := e.do(Request{UserID: bob}).NextBatch
			lat := make([]time.Duration, 0, b.N)
			done := make(chan syncResp, 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				go func(since string) {
					done <- e.do(Request{UserID: bob, Since: since, Timeout: 30 * time.Second, SetPresence: "offline"})
				}(since)
				waitWaiting(b, e, 1)
				start := time.Now()
				e.send(room, alice, "ping")
				r := <-done
				lat = append(lat, time.Since(start))
				if len(r.Rooms.Join[room].Timeline.Events) == 0 {
					b.Fatal("sync returned without the message")
				}
				since = r.NextBatch
			}
			b.StopTimer()
			slices.Sort(lat)
			var sum time.Duration
			for _, l := range lat {
				sum += l
			}
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(sum.Microseconds())/float64(len(lat)), "mean-µs")
		})
	}
}

// BenchmarkInitialSync21Rooms is an initial /sync of a user in 21 rooms
// of five members with 30 messages each (timeline limit 10): the batched
// reads keep it to a fixed number of queries however many rooms there
// are.
func BenchmarkInitialSync21Rooms(b *testing.B) {
	for i, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			e := &env{open: engines(b)[i].open}
			e.start(b)
			defer e.stop()
			members := []string{user("a"), user("b"), user("c"), user("d")}
			viewer := user("viewer")
			for r := 0; r < 21; r++ {
				room := e.room(members[0], "", append(members[1:], viewer)...)
				for m := 0; m < 30; m++ {
					e.send(room, members[m%len(members)], "hello")
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := e.do(Request{UserID: viewer, SetPresence: "offline"})
				if len(r.Rooms.Join) != 21 {
					b.Fatalf("%d rooms", len(r.Rooms.Join))
				}
			}
		})
	}
}
