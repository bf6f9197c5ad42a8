package roomserver

import (
	"sync"
	"testing"
	"time"
)

// Identical createRoom requests by one user in the same millisecond must get
// distinct v12 room IDs (the ID is the create event's hash).
func TestIdenticalCreatesInOneMillisecond(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		frozen := time.UnixMilli(1_700_000_000_000)
		s.cfg.Now = func() time.Time { return frozen }
		const n = 8
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ids[i], errs[i] = s.CreateRoom(ctxT(t), CreateRoomRequest{Creator: user("alice"), Preset: "private_chat"})
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("create %d: %v", i, errs[i])
			}
			if seen[ids[i]] {
				t.Fatalf("room ID %s issued twice", ids[i])
			}
			seen[ids[i]] = true
		}
	})
}

func TestCreateTimeIsStrictlyIncreasing(t *testing.T) {
	s := &Service{}
	base := time.UnixMilli(5000)
	cases := []struct {
		now  time.Time
		want int64
	}{
		{base, 5000},
		{base, 5001},
		{base.Add(-time.Second), 5002}, // a clock step backwards never repeats a timestamp
		{base.Add(time.Second), 6000},
	}
	for i, tc := range cases {
		if got := s.createTime(tc.now).UnixMilli(); got != tc.want {
			t.Fatalf("step %d: %d, want %d", i, got, tc.want)
		}
	}
}
