package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// smallOptions is the default workload scaled down for tests, with the busy
// probe shortened so each scenario does not wait a whole second.
func smallOptions() options {
	o := defaultOptions()
	o.Users, o.Rooms, o.Members, o.Messages, o.Concurrency = 12, 10, 10, 120, 4
	o.SendRooms, o.Listeners, o.FanoutMessages, o.FanoutInterval = 3, 3, 15, time.Millisecond
	o.SyncRooms, o.TimelineLimit, o.SyncRepeats = 4, 3, 5
	o.PageLimit, o.PagePasses = 7, 2
	o.MaxDuration = time.Minute
	o.FanoutDrain = 5 * time.Second
	o.Busy = busyPolicy{Interval: 5 * time.Millisecond, Window: 30 * time.Millisecond, IdleTicks: 100, Cap: 500 * time.Millisecond}
	o.Server = "fake"
	return o
}

// runLoad runs the tool against h and returns the parsed JSON lines.
func runLoad(t *testing.T, h *fakeHS, o options) []Result {
	t.Helper()
	var out bytes.Buffer
	outFile := t.TempDir() + "/results.jsonl"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := load(context.Background(), o, h.srv.URL, outFile, &out, log); err != nil {
		t.Fatalf("load: %v", err)
	}
	saved, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, out.Bytes()) {
		t.Errorf("--out file differs from stdout:\n%s\nvs\n%s", saved, out.Bytes())
	}
	var results []Result
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		results = append(results, r)
	}
	return results
}

func byName(results []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range results {
		m[r.Scenario] = r
	}
	return m
}

func TestEveryScenarioAgainstFakeHomeserver(t *testing.T) {
	h := newFakeHS(t, nil)
	o := smallOptions()
	o.PID = os.Getpid() // the fake server lives in this process
	o.Disk = t.TempDir()
	results := runLoad(t, h, o)

	if len(results) != len(scenarioOrder)+1 {
		t.Fatalf("got %d lines, want one per scenario plus the summary", len(results))
	}
	for i, name := range scenarioOrder {
		if results[i].Scenario != name {
			t.Errorf("line %d is %q, want %q", i, results[i].Scenario, name)
		}
	}
	got := byName(results)
	wantCount := map[string]int{
		"register":         o.Users,
		"create_room":      o.Rooms,
		"join":             o.Members - 1,
		"send_one_room":    o.Messages,
		"send_many_rooms":  o.Messages,
		"send_sync_fanout": o.FanoutMessages * o.Listeners,
		"initial_sync":     o.SyncRepeats,
	}
	for _, name := range scenarioOrder {
		r := got[name]
		if r.Status != "ok" || r.Errors != 0 || r.Error != "" {
			t.Errorf("%s: status %q, %d errors, error %q", name, r.Status, r.Errors, r.Error)
		}
		if want, ok := wantCount[name]; ok && r.Count != want {
			t.Errorf("%s: count %d, want %d", name, r.Count, want)
		}
		if r.Server != "fake" || r.DurationS <= 0 || r.Throughput <= 0 {
			t.Errorf("%s: server %q duration %v throughput %v", name, r.Server, r.DurationS, r.Throughput)
		}
		if !(0 < r.P50MS && r.P50MS <= r.P95MS && r.P95MS <= r.P99MS && r.P99MS <= r.MaxMS) {
			t.Errorf("%s: percentiles out of order: p50 %v p95 %v p99 %v max %v", name, r.P50MS, r.P95MS, r.P99MS, r.MaxMS)
		}
		if r.RSSBeforeMB == nil || *r.RSSBeforeMB <= 0 || r.RSSAfterMB == nil || r.CPUS == nil || r.BusyAfterS == nil {
			t.Errorf("%s: --pid fields missing: %+v", name, r)
		}
		if r.DiskBeforeBytes == nil || r.DiskAfterBytes == nil {
			t.Errorf("%s: --disk fields missing", name)
		}
	}
	// /messages walks the 120-message history twice, plus the room's state.
	if m := got["messages"]; m.Count < 2*o.Messages {
		t.Errorf("messages: %d events, want at least %d", m.Count, 2*o.Messages)
	}

	sum := got["run_summary"]
	// Sent: the two send scenarios, the fan-out, and the initial-sync setup.
	wantSent := 2*o.Messages + o.FanoutMessages + o.SyncRooms*o.TimelineLimit
	if sum.MessagesSent != int64(wantSent) || h.countEvents("m.room.message") != wantSent {
		t.Errorf("messages sent: summary %d, server %d, want %d", sum.MessagesSent, h.countEvents("m.room.message"), wantSent)
	}
	if sum.RSSIdleMB == nil || sum.RSSEndMB == nil || sum.Requests == 0 {
		t.Errorf("summary incomplete: %+v", sum)
	}
	// Registration went through UIA: two requests per user.
	if n := h.called("POST /_matrix/client/v3/register"); n < 2*o.Users {
		t.Errorf("register called %d times, want >= %d (UIA round trip)", n, 2*o.Users)
	}
}

func TestRateLimitIsHonouredAndCounted(t *testing.T) {
	h := newFakeHS(t, func(h *fakeHS) { h.rateLimitSends = 5 })
	o := smallOptions()
	o.Scenarios = []string{"send_one_room"}
	r := byName(runLoad(t, h, o))["send_one_room"]
	if r.Status != "ok" || r.Count != o.Messages || r.RateLimited != 5 {
		t.Fatalf("status %q count %d rate_limited %d, want ok %d 5 (%s)", r.Status, r.Count, r.RateLimited, o.Messages, r.Error)
	}
	// Each 429 asked for 20 ms; the slowest sends waited at least that.
	if r.MaxMS < 20 {
		t.Errorf("max latency %v ms, want >= 20 (retry_after_ms honoured)", r.MaxMS)
	}
}

// Failed sends are errors, and the listeners are not kept waiting for
// messages that never existed.
func TestFanoutWithFailedSends(t *testing.T) {
	const failed = 4
	h := newFakeHS(t, func(h *fakeHS) { h.failSends = failed })
	o := smallOptions()
	o.Scenarios = []string{"send_sync_fanout"}
	o.FanoutDrain = 20 * time.Second
	start := time.Now()
	r := byName(runLoad(t, h, o))["send_sync_fanout"]
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s: the listeners waited for the drain", took)
	}
	if r.Status != "partial" || r.Errors != failed || r.Count != (o.FanoutMessages-failed)*o.Listeners || !strings.Contains(r.Error, "disk on fire") {
		t.Errorf("got status %q errors %d count %d error %q", r.Status, r.Errors, r.Count, r.Error)
	}
}

func TestSharedSecretRegistration(t *testing.T) {
	h := newFakeHS(t, func(h *fakeHS) { h.secret = "s3cret" })
	o := smallOptions()
	o.Scenarios = []string{"register"}
	o.SharedSecret = "s3cret"
	r := byName(runLoad(t, h, o))["register"]
	if r.Status != "ok" || r.Count != o.Users || r.Params["method"] != "shared_secret" {
		t.Fatalf("got %+v", r)
	}
	if n := h.called("POST /_matrix/client/v3/register"); n != 0 {
		t.Errorf("UIA /register used %d times with a shared secret", n)
	}

	// A wrong secret fails every registration, and says why.
	o.SharedSecret = "wrong"
	r = byName(runLoad(t, h, o))["register"]
	if r.Status != "failed" || r.Errors != o.Users || !strings.Contains(r.Error, "M_FORBIDDEN") {
		t.Fatalf("wrong secret: %+v", r)
	}
}

// Against a server with only account endpoints every scenario still prints
// a line, failed with the server's error.
func TestMissingEndpointsAreReportedNotOmitted(t *testing.T) {
	h := newFakeHS(t, func(h *fakeHS) { h.noRooms = true })
	results := runLoad(t, h, smallOptions())
	got := byName(results)
	if len(results) != len(scenarioOrder)+1 {
		t.Fatalf("got %d lines, want %d", len(results), len(scenarioOrder)+1)
	}
	if r := got["register"]; r.Status != "ok" {
		t.Errorf("register: %+v", r)
	}
	for _, name := range scenarioOrder[1:] {
		r := got[name]
		if r.Status != "failed" || !strings.Contains(r.Error, "M_UNRECOGNIZED") {
			t.Errorf("%s: status %q error %q, want failed with M_UNRECOGNIZED", name, r.Status, r.Error)
		}
	}
}

func TestMaxDurationStopsEverything(t *testing.T) {
	h := newFakeHS(t, func(h *fakeHS) { h.sendDelay = 20 * time.Millisecond })
	o := smallOptions()
	o.Messages = 100_000
	o.MaxDuration = 1500 * time.Millisecond
	start := time.Now()
	got := byName(runLoad(t, h, o))
	if took := time.Since(start); took > o.MaxDuration+5*time.Second {
		t.Errorf("took %s with --max-duration %s", took, o.MaxDuration)
	}
	send := got["send_one_room"]
	if send.Status == "ok" || send.Count >= o.Messages || !strings.Contains(send.Error, "max-duration") {
		t.Errorf("send_one_room: %+v", send)
	}
	for _, name := range []string{"send_many_rooms", "messages"} {
		if r := got[name]; r.Status != "failed" || !strings.Contains(r.Error, "max-duration") {
			t.Errorf("%s: status %q error %q, want failed: not run", name, r.Status, r.Error)
		}
	}
	if s := got["run_summary"]; s.Status != "partial" {
		t.Errorf("summary status %q, want partial", s.Status)
	}
}

func TestSoak(t *testing.T) {
	h := newFakeHS(t, nil)
	o := smallOptions()
	o.Soak = true
	o.PID = os.Getpid()
	o.SoakRate, o.SoakDuration = 100, 1500*time.Millisecond
	o.SoakWarmup, o.SoakSample = 300*time.Millisecond, 200*time.Millisecond
	results := runLoad(t, h, o)
	if len(results) != 2 {
		t.Fatalf("got %d lines, want soak + summary", len(results))
	}
	r := results[0]
	if r.Scenario != "soak" || r.Soak == nil {
		t.Fatalf("first line %+v", r)
	}
	// Open loop at 100/s for 1.5 s: 150 sends, all of them on a fast server.
	if r.Count+r.Soak.Skipped != 150 || r.Count < 140 {
		t.Errorf("sent %d, skipped %d, want 150 in all", r.Count, r.Soak.Skipped)
	}
	if len(r.Soak.Samples) < 7 || r.Soak.MemoryStable == nil || r.Soak.BaselineMB == nil || r.Soak.Verdict == "" {
		t.Errorf("memory not judged: %+v", r.Soak)
	}
	if r.DurationS < 1.4 || r.DurationS > 3 {
		t.Errorf("duration %v s, want about 1.5", r.DurationS)
	}
}

func TestJudgeMemory(t *testing.T) {
	tests := []struct {
		name    string
		samples []float64 // one every 10 s; the first is in the 10 s warm-up
		havePID bool
		stable  *bool
	}{
		{"flat", []float64{50, 20, 21, 22, 21, 20.5}, true, ptr(true)},
		{"warm-up growth is ignored", []float64{5, 20, 20, 21.9}, true, ptr(true)},
		{"growth", []float64{10, 20, 22, 25}, true, ptr(false)},
		{"shrink below 90%", []float64{10, 20, 17.9}, true, ptr(false)},
		{"exactly +10%", []float64{10, 20, 22}, true, ptr(true)},
		{"no sample after warm-up", []float64{10}, true, nil},
		{"no pid", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &soakReport{}
			for i, v := range tt.samples {
				rep.Samples = append(rep.Samples, rssSample{AtS: float64(10 * i), MB: v})
			}
			judgeMemory(rep, 10*time.Second, tt.havePID)
			if (rep.MemoryStable == nil) != (tt.stable == nil) || (tt.stable != nil && *rep.MemoryStable != *tt.stable) {
				t.Errorf("stable = %v, want %v (%s)", rep.MemoryStable, tt.stable, rep.Verdict)
			}
			if rep.Verdict == "" {
				t.Error("no verdict")
			}
		})
	}
}

func TestRunRefusesNonLoopbackTargets(t *testing.T) {
	for _, url := range []string{"http://10.0.0.1:8008", "http://192.0.2.7", "https://[2001:db8::1]:8448"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"--url", url}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: err = %v, want a loopback refusal", url, err)
		}
		if out.Len() != 0 {
			t.Errorf("%s: printed %q before refusing", url, out.String())
		}
	}
}

func TestRunThroughFlags(t *testing.T) {
	h := newFakeHS(t, nil)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"--url", h.srv.URL, "--scenarios", "1", "--users", "3", "--server", "flags"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r Result
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &r) != nil || r.Scenario != "register" || r.Count != 3 || r.Server != "flags" {
		t.Fatalf("output %q", out.String())
	}
}
