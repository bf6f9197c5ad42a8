package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func durations(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func seqMS(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", durations(7), 99, 7 * time.Millisecond},
		{"one sample p0", durations(7), 0, 7 * time.Millisecond},
		{"1..100 p50", seqMS(100), 50, 50 * time.Millisecond},
		{"1..100 p95", seqMS(100), 95, 95 * time.Millisecond},
		{"1..100 p99", seqMS(100), 99, 99 * time.Millisecond},
		{"1..100 p100 is the max", seqMS(100), 100, 100 * time.Millisecond},
		{"1..10 p99 rounds up to the max", seqMS(10), 99, 10 * time.Millisecond},
		{"1..10 p50 is the 5th", seqMS(10), 50, 5 * time.Millisecond},
		{"1..10 p95 is the 10th", seqMS(10), 95, 10 * time.Millisecond},
		{"two samples p50 is the lower", durations(1, 9), 50, time.Millisecond},
		{"two samples p51 is the upper", durations(1, 9), 51, 9 * time.Millisecond},
		{"1..2000 p99 is the 1980th", seqMS(2000), 99, 1980 * time.Millisecond},
		{"q above 100 is clamped", seqMS(3), 150, 3 * time.Millisecond},
		{"negative q is the min", seqMS(3), -5, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tt.sorted), tt.q, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsAndKeepsInput(t *testing.T) {
	in := durations(30, 10, 20, 50, 40)
	s := summarize(in)
	if s.P50 != 30*time.Millisecond || s.P95 != 50*time.Millisecond || s.Max != 50*time.Millisecond {
		t.Errorf("summary %+v", s)
	}
	if in[0] != 30*time.Millisecond {
		t.Error("summarize reordered its input")
	}
	if got := summarize(nil); got != (latencySummary{}) {
		t.Errorf("empty summary %+v", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{4}, 4},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1000}, 10},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMS(t *testing.T) {
	if got := ms(1234567 * time.Nanosecond); got != 1.235 {
		t.Errorf("ms = %v, want 1.235", got)
	}
}

// fakeLookup resolves from a table, as DNS would.
func fakeLookup(table map[string][]string) lookupFunc {
	return func(_ context.Context, host string) ([]net.IPAddr, error) {
		addrs, ok := table[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []net.IPAddr
		for _, a := range addrs {
			out = append(out, net.IPAddr{IP: net.ParseIP(a)})
		}
		return out, nil
	}
}

func TestCheckBaseURL(t *testing.T) {
	lookup := fakeLookup(map[string][]string{
		"localhost":       {"127.0.0.1", "::1"},
		"myelin.test":     {"127.0.0.2"},
		"example.com":     {"93.184.216.34"},
		"split.test":      {"127.0.0.1", "10.0.0.5"},
		"empty.test":      {},
		"mapped-v4.test":  {"::ffff:127.0.0.1"},
		"private-v6.test": {"fd00::1"},
	})
	tests := []struct {
		raw     string
		want    string // the normalised base, when accepted
		wantErr string
	}{
		{"http://127.0.0.1:8008", "http://127.0.0.1:8008", ""},
		{"http://127.0.0.1:8008/", "http://127.0.0.1:8008", ""},
		{"http://127.8.9.10", "http://127.8.9.10", ""},
		{"https://[::1]:8448", "https://[::1]:8448", ""},
		{"http://localhost:8008", "http://localhost:8008", ""},
		{"http://myelin.test/prefix/", "http://myelin.test/prefix", ""},
		{"http://mapped-v4.test", "http://mapped-v4.test", ""},
		{"http://10.0.0.1:8008", "", "not a loopback"},
		{"http://0.0.0.0:8008", "", "not a loopback"},
		{"http://[::]:8008", "", "not a loopback"},
		{"http://192.168.1.20", "", "not a loopback"},
		{"http://example.com", "", "not loopback"},
		{"http://split.test", "", "10.0.0.5"},
		{"http://private-v6.test", "", "not loopback"},
		{"http://empty.test", "", "no address"},
		{"http://nowhere.test", "", "resolve"},
		{"ftp://127.0.0.1", "", "scheme"},
		{"127.0.0.1:8008", "", "base URL"},
		{"localhost:8008", "", "scheme"},
		{"http://", "", "no host"},
		{"http://user:pw@127.0.0.1", "", "user info"},
		{"http://127.0.0.1?x=1", "", "query"},
		{"http://%zz", "", "base URL"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := checkBaseURL(context.Background(), lookup, tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if u.String() != tt.want {
				t.Errorf("base = %q, want %q", u.String(), tt.want)
			}
		})
	}
}

func TestDialLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8008", true},
		{"127.255.0.1:1", true},
		{"[::1]:8448", true},
		{"10.0.0.1:8008", false},
		{"[2001:db8::1]:443", false},
		{"0.0.0.0:80", false},
		{"localhost:80", false}, // the dialer sees resolved addresses only
		{"garbage", false},
	}
	for _, tt := range tests {
		err := dialLoopbackOnly("tcp", tt.addr, nil)
		if (err == nil) != tt.ok {
			t.Errorf("dialLoopbackOnly(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errNotLoopback) {
			t.Errorf("dialLoopbackOnly(%q) = %v, want errNotLoopback", tt.addr, err)
		}
	}
}

// The transport itself refuses a non-loopback connection, whatever the URL
// check said (a redirect or a changed DNS answer).
func TestClientNeverDialsOffMachine(t *testing.T) {
	c := newClient("http://192.0.2.1:8008", time.Second)
	defer c.close()
	err := c.do(context.Background(), request{method: "GET", path: "/_matrix/client/versions"})
	if !errors.Is(err, errNotLoopback) {
		t.Fatalf("err = %v, want errNotLoopback", err)
	}
}

func TestRetryWait(t *testing.T) {
	tests := []struct {
		ms     int64
		header string
		want   time.Duration
	}{
		{250, "", 250 * time.Millisecond},
		{250, "9", 250 * time.Millisecond}, // the body wins
		{0, "2", 2 * time.Second},
		{0, "", time.Second},
		{0, "soon", time.Second},
		{0, "-3", time.Second},
		{3_600_000, "", maxRetryWait},
		{0, "86400", maxRetryWait},
	}
	for _, tt := range tests {
		if got := retryWait(tt.ms, tt.header); got != tt.want {
			t.Errorf("retryWait(%d, %q) = %v, want %v", tt.ms, tt.header, got, tt.want)
		}
	}
}

func TestSharedSecretMAC(t *testing.T) {
	// HMAC-SHA1("secret", "abc\x00bob\x00pw\x00notadmin"), computed independently
	// (python3 hmac module).
	const want = "8ea9b87daa4e529ce4a0832f09be19bbe837a0af"
	got := sharedSecretMAC("secret", "abc", "bob", "pw")
	if len(got) != 40 {
		t.Fatalf("mac %q is not hex SHA1", got)
	}
	if got != want {
		t.Errorf("mac = %s, want %s", got, want)
	}
}

func writeProc(t *testing.T, pid int, status, stat string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if status != "" {
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if stat != "" {
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestProcReader(t *testing.T) {
	const status = "Name:\tmyelin\nVmPeak:\t  900000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	// The command name holds spaces and a ')' to trip naive parsers.
	const stat = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 9 0 100 1000000 5000 18446744073709551615\n"
	tests := []struct {
		name         string
		status, stat string
		wantRSS      int64
		wantTicks    int64
		wantErr      string
	}{
		{"normal", status, stat, 20480 * 1024, 175, ""},
		{"no VmRSS (zombie)", "Name:\tx\nState:\tZ (zombie)\n", stat, 0, 0, "no VmRSS"},
		{"bad VmRSS unit", "VmRSS:\t 12 MB\n", stat, 0, 0, "unexpected VmRSS"},
		{"short stat", status, "4242 (x) S 1 2\n", 0, 0, "fields"},
		{"no status file", "", stat, 0, 0, "read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := procReader{root: writeProc(t, 4242, tt.status, tt.stat), pid: 4242}
			s, err := p.read()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.RSSBytes != tt.wantRSS || s.CPUTicks != tt.wantTicks {
				t.Errorf("got %+v, want rss %d ticks %d", s, tt.wantRSS, tt.wantTicks)
			}
			if s.cpuSeconds() != 1.75 {
				t.Errorf("cpu seconds %v, want 1.75", s.cpuSeconds())
			}
		})
	}
}

func TestProcReaderOnThisProcess(t *testing.T) {
	s, err := procReader{root: "/proc", pid: os.Getpid()}.read()
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes < 1<<20 || s.CPUTicks < 0 {
		t.Errorf("implausible sample of ourselves: %+v", s)
	}
}

func TestBusyAfter(t *testing.T) {
	pol := busyPolicy{Interval: 5 * time.Millisecond, Window: 50 * time.Millisecond, IdleTicks: 0, Cap: 2 * time.Second}

	t.Run("idle at once", func(t *testing.T) {
		busy, capped, err := busyAfter(context.Background(), pol, func() (int64, error) { return 7, nil })
		if err != nil || capped || busy != 0 {
			t.Errorf("busy %v capped %v err %v, want 0", busy, capped, err)
		}
	})
	t.Run("busy for a while", func(t *testing.T) {
		start := time.Now()
		var ticks atomic.Int64
		busy, capped, err := busyAfter(context.Background(), pol, func() (int64, error) {
			if time.Since(start) < 200*time.Millisecond {
				return ticks.Add(1), nil
			}
			return ticks.Load(), nil
		})
		if err != nil || capped {
			t.Fatalf("capped %v err %v", capped, err)
		}
		// The lower bound is the logic (the ticks moved until 200 ms); the
		// upper one only guards against counting the idle window as busy,
		// and is loose because a loaded CI machine may delay the sampler.
		if busy < 180*time.Millisecond || busy > 1500*time.Millisecond {
			t.Errorf("busy %v, want about 200ms", busy)
		}
	})
	t.Run("never idle is capped", func(t *testing.T) {
		pol := pol
		pol.Cap = 150 * time.Millisecond
		var ticks atomic.Int64
		busy, capped, err := busyAfter(context.Background(), pol, func() (int64, error) { return ticks.Add(1), nil })
		if err != nil || !capped || busy != pol.Cap {
			t.Errorf("busy %v capped %v err %v, want the cap", busy, capped, err)
		}
	})
	t.Run("a little CPU under the threshold is idle", func(t *testing.T) {
		pol := pol
		pol.IdleTicks = 1000
		var ticks atomic.Int64
		busy, _, err := busyAfter(context.Background(), pol, func() (int64, error) { return ticks.Add(1), nil })
		if err != nil || busy != 0 {
			t.Errorf("busy %v err %v, want 0", busy, err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		if _, _, err := busyAfter(context.Background(), pol, func() (int64, error) { return 0, os.ErrNotExist }); err == nil {
			t.Error("no error")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var ticks atomic.Int64
		if _, _, err := busyAfter(ctx, pol, func() (int64, error) { return ticks.Add(1), nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestDirBytes(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "a.db"), make([]byte, 1000), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "b"), make([]byte, 24), 0o644))
	must(os.Symlink(filepath.Join(dir, "a.db"), filepath.Join(dir, "link"))) // not counted twice
	got, err := dirBytes(dir)
	if err != nil || got != 1024 {
		t.Errorf("dirBytes = %d, %v; want 1024", got, err)
	}
	if _, err := dirBytes(filepath.Join(dir, "missing")); err == nil {
		t.Error("no error for a missing directory")
	}
}

func TestParseScenarios(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"all", strings.Join(scenarioOrder, ","), false},
		{"1", "register", false},
		{"messages,register", "register,messages", false}, // canonical order
		{"4, 8 ,send_one_room", "send_one_room,messages", false},
		{"9", "", true},
		{"0", "", true},
		{"sendd", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := parseScenarios(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseScenarios(%q) err = %v", tt.in, err)
			continue
		}
		if err == nil && strings.Join(got, ",") != tt.want {
			t.Errorf("parseScenarios(%q) = %v, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(options) bool
		wantErr string
	}{
		{"defaults are the issue's workload", nil, func(o options) bool {
			return o.Users == 50 && o.Concurrency == 8 && o.Messages == 2000 && o.MsgSize == 100 &&
				o.Members == 50 && o.SendRooms == 20 && o.Listeners == 10 && o.SyncRooms == 21 &&
				o.TimelineLimit == 20 && o.PageLimit == 100 && o.MaxDuration == 10*time.Minute && len(o.Scenarios) == 8
		}, ""},
		{"soak extends the default max duration", []string{"--soak", "--soak-duration", "10m"}, func(o options) bool {
			return o.MaxDuration == 15*time.Minute
		}, ""},
		{"an explicit max duration wins", []string{"--soak", "--max-duration", "2m"}, func(o options) bool {
			return o.MaxDuration == 2*time.Minute
		}, ""},
		{"zero concurrency", []string{"--concurrency", "0"}, nil, "--concurrency"},
		{"unbounded messages", []string{"--messages", "100000000"}, nil, "--messages"},
		{"one member", []string{"--members", "1"}, nil, "--members"},
		{"zero max duration", []string{"--max-duration", "0s"}, nil, "--max-duration"},
		{"negative soak rate", []string{"--soak-rate", "-1"}, nil, "--soak-rate"},
		{"every problem at once", []string{"--users", "0", "--listeners", "0"}, nil, "--listeners"},
		{"stray argument", []string{"extra"}, nil, "unexpected"},
		{"bad scenario", []string{"--scenarios", "nope"}, nil, "unknown scenario"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _, err := parseFlags(tt.args, &strings.Builder{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}

func TestFiller(t *testing.T) {
	for _, n := range []int{1, 100, 1000} {
		if got := filler(n); len(got) != n {
			t.Errorf("filler(%d) has %d bytes", n, len(got))
		}
	}
}
