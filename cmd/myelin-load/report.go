package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The report turns bench runs (JSON lines per run and engine) into
// docs/performance.md: the table with Myelin's measured columns,
// each figure the median over the runs, judged against the targets.

const reportUsage = `myelin-load report — write the performance page from bench results

Usage:
  myelin-load report --sqlite RUN1.jsonl,RUN2.jsonl --postgres RUN1.jsonl --out docs/performance.md [flags]

The section between <!-- pprof:begin --> and <!-- pprof:end --> in an existing
--out file is kept: it holds the hand-written profile findings.

Flags:
`

type reportOptions struct {
	SQLite, Postgres []string
	Bench            string // go test -bench output
	BenchExit        int    // its exit status
	Out              string
	Commit           string
	Date             string
	Durability       string
	Notes            []string // engine-level notes, e.g. a server that failed to start
}

func runReport(args []string, stdout, stderr io.Writer) error {
	var o reportOptions
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reportUsage); fs.PrintDefaults() }
	sqlite := fs.String("sqlite", "", "comma-separated JSON-lines files of the SQLite runs")
	postgres := fs.String("postgres", "", "comma-separated JSON-lines files of the PostgreSQL runs")
	fs.StringVar(&o.Bench, "bench", "", "file with the output of go test -bench")
	fs.IntVar(&o.BenchExit, "bench-exit", 0, "exit status of go test -bench")
	fs.StringVar(&o.Out, "out", "docs/performance.md", "the page to write")
	fs.StringVar(&o.Commit, "commit", "", "commit the figures belong to")
	fs.StringVar(&o.Date, "date", time.Now().UTC().Format("2006-01-02 15:04 MST"), "date of the run")
	fs.StringVar(&o.Durability, "durability", "default", "durability setting the server ran with")
	note := fs.String("note", "", "a note to print under the table (repeatable with |)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.SQLite, o.Postgres = splitList(*sqlite), splitList(*postgres)
	o.Notes = splitListSep(*note, "|")
	sq, err := loadRuns(o.SQLite)
	if err != nil {
		return err
	}
	pg, err := loadRuns(o.Postgres)
	if err != nil {
		return err
	}
	var bench []byte
	if o.Bench != "" {
		if bench, err = os.ReadFile(o.Bench); err != nil {
			return fmt.Errorf("--bench: %w", err)
		}
	}
	old, err := os.ReadFile(o.Out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	page := renderReport(o, sq, pg, bench, keptPprof(old), machine())
	if err := os.WriteFile(o.Out, []byte(page), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", o.Out)
	return nil
}

func splitList(s string) []string { return splitListSep(s, ",") }

func splitListSep(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runs are the results of several runs of one engine, by scenario.
type runs struct {
	n          int // runs
	byScenario map[string][]Result
}

func loadRuns(files []string) (runs, error) {
	rs := runs{byScenario: map[string][]Result{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return rs, fmt.Errorf("read results: %w", err)
		}
		rs.n++
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for line := 1; sc.Scan(); line++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var r Result
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return rs, fmt.Errorf("%s:%d: %w", f, line, err)
			}
			rs.byScenario[r.Scenario] = append(rs.byScenario[r.Scenario], r)
		}
		if err := sc.Err(); err != nil {
			return rs, fmt.Errorf("%s: %w", f, err)
		}
	}
	return rs, nil
}

// agg is one scenario of one engine over its runs: the medians of the runs
// that produced figures.
type agg struct {
	all, usable []Result
}

func (rs runs) get(name string) agg {
	a := agg{all: rs.byScenario[name]}
	for _, r := range a.all {
		if r.Status != "failed" {
			a.usable = append(a.usable, r)
		}
	}
	return a
}

// med is the median of f over the usable runs where it is present.
func (a agg) med(f func(Result) (float64, bool)) (float64, bool) {
	var vs []float64
	for _, r := range a.usable {
		if v, ok := f(r); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	return median(vs), true
}

func field(get func(Result) float64) func(Result) (float64, bool) {
	return func(r Result) (float64, bool) { return get(r), true }
}

func opt(get func(Result) *float64) func(Result) (float64, bool) {
	return func(r Result) (float64, bool) {
		if p := get(r); p != nil {
			return *p, true
		}
		return 0, false
	}
}

var (
	fThroughput = field(func(r Result) float64 { return r.Throughput })
	fP50        = field(func(r Result) float64 { return r.P50MS })
	fP95        = field(func(r Result) float64 { return r.P95MS })
	fP99        = field(func(r Result) float64 { return r.P99MS })
	fErrors     = field(func(r Result) float64 { return float64(r.Errors) })
	fCount      = field(func(r Result) float64 { return float64(r.Count) })
	fCPUPerOp   = opt(func(r Result) *float64 { return r.CPUMSPerOp })
	fBusy       = opt(func(r Result) *float64 { return r.BusyAfterS })
	fDiskPerOp  = opt(func(r Result) *float64 { return r.DiskPerOpBytes })
	fRSSIdle    = opt(func(r Result) *float64 { return r.RSSIdleMB })
	fRSSEnd     = opt(func(r Result) *float64 { return r.RSSEndMB })
)

// failure explains why an aggregate has no figures.
func (a agg) failure() string {
	if len(a.all) == 0 {
		return "not run"
	}
	last := a.all[len(a.all)-1]
	msg := last.Error
	if msg == "" {
		msg = "no figures"
	}
	return "failed: " + truncate(msg, 160)
}

// check is one target: a value against a bound.
type check struct {
	what   string
	value  float64
	bound  float64
	atMost bool // latency-like (value must be <= bound); else throughput-like
	unit   string
}

func (c check) met() bool {
	if c.atMost {
		return c.value <= c.bound
	}
	return c.value >= c.bound
}

// miss says by how much a check failed.
func (c check) miss() string {
	if c.atMost {
		return fmt.Sprintf("%s %s%s > %s%s (%.1f× the bound)", c.what, fmtNum(c.value), c.unit, fmtNum(c.bound), c.unit, c.value/c.bound)
	}
	return fmt.Sprintf("%s %s%s < %s%s (%.0f%% short)", c.what, fmtNum(c.value), c.unit, fmtNum(c.bound), c.unit, 100*(1-c.value/c.bound))
}

func verdict(checks []check) string {
	if len(checks) == 0 {
		return "" // a row without a target
	}
	var missed []string
	for _, c := range checks {
		if !c.met() {
			missed = append(missed, c.miss())
		}
	}
	if len(missed) == 0 {
		return " ✅"
	}
	return " ❌ " + strings.Join(missed, "; ")
}

// row is one line of the table. cell renders the figures of one
// engine; loosen is 1 for SQLite and 2 for PostgreSQL (half the throughput,
// twice every other bound).
type row struct {
	title, dendrite, target string
	cell                    func(rs runs, loosen float64) string
}

func scenarioCell(name string, render func(a agg, loosen float64) (string, []check)) func(runs, float64) string {
	return func(rs runs, loosen float64) string {
		a := rs.get(name)
		if len(a.usable) == 0 {
			return a.failure()
		}
		text, checks := render(a, loosen)
		if e, _ := a.med(fErrors); e > 0 {
			text += fmt.Sprintf(" (%s errors)", fmtNum(e))
		}
		return text + verdict(checks)
	}
}

func tableRows() []row {
	return []row{
		{"send into one room (50 members), C=8", "34.8 msg/s, p50 225 ms, p99 383 ms, 37 ms server CPU/msg", "≥ 2,000 msg/s, p99 ≤ 20 ms",
			scenarioCell("send_one_room", func(a agg, l float64) (string, []check) {
				tp, _ := a.med(fThroughput)
				p50, _ := a.med(fP50)
				p99, _ := a.med(fP99)
				s := fmt.Sprintf("%s msg/s, p50 %s ms, p99 %s ms", fmtNum(tp), fmtNum(p50), fmtNum(p99))
				if cpu, ok := a.med(fCPUPerOp); ok {
					s += fmt.Sprintf(", %s ms server CPU/msg", fmtNum(cpu))
				}
				return s, []check{{"throughput", tp, 2000 / l, false, " msg/s"}, {"p99", p99, 20 * l, true, " ms"}}
			})},
		{"send into 20 rooms, C=8", "54 msg/s, p99 515 ms", "≥ 3,000 msg/s, p99 ≤ 20 ms",
			scenarioCell("send_many_rooms", func(a agg, l float64) (string, []check) {
				tp, _ := a.med(fThroughput)
				p99, _ := a.med(fP99)
				return fmt.Sprintf("%s msg/s, p99 %s ms", fmtNum(tp), fmtNum(p99)),
					[]check{{"throughput", tp, 3000 / l, false, " msg/s"}, {"p99", p99, 20 * l, true, " ms"}}
			})},
		{"send → seen by 10 long-polling `/sync` listeners", "p50 46 ms, p99 243 ms", "p99 ≤ 10 ms",
			scenarioCell("send_sync_fanout", func(a agg, l float64) (string, []check) {
				p50, _ := a.med(fP50)
				p99, _ := a.med(fP99)
				return fmt.Sprintf("p50 %s ms, p99 %s ms", fmtNum(p50), fmtNum(p99)), []check{{"p99", p99, 10 * l, true, " ms"}}
			})},
		{"`createRoom`", "7.3 /s, p50 0.95 s", "≥ 200 /s",
			scenarioCell("create_room", func(a agg, l float64) (string, []check) {
				tp, _ := a.med(fThroughput)
				p50, _ := a.med(fP50)
				return fmt.Sprintf("%s /s, p50 %s ms", fmtNum(tp), fmtNum(p50)), []check{{"throughput", tp, 200 / l, false, " /s"}}
			})},
		{"join a room as it fills to 50 members", "25 /s, p99 1.8 s", "≥ 300 /s, p99 ≤ 30 ms",
			scenarioCell("join", func(a agg, l float64) (string, []check) {
				tp, _ := a.med(fThroughput)
				p99, _ := a.med(fP99)
				return fmt.Sprintf("%s /s, p99 %s ms", fmtNum(tp), fmtNum(p99)),
					[]check{{"throughput", tp, 300 / l, false, " /s"}, {"p99", p99, 30 * l, true, " ms"}}
			})},
		{"initial `/sync`, 21 rooms, timeline limit 20", "p50 190 ms", "p50 ≤ 15 ms",
			scenarioCell("initial_sync", func(a agg, l float64) (string, []check) {
				p50, _ := a.med(fP50)
				return fmt.Sprintf("p50 %s ms", fmtNum(p50)), []check{{"p50", p50, 15 * l, true, " ms"}}
			})},
		{"`/messages` back-pagination, 100 per page", "1,736 events/s", "≥ 30,000 events/s",
			scenarioCell("messages", func(a agg, l float64) (string, []check) {
				tp, _ := a.med(fThroughput)
				return fmt.Sprintf("%s events/s", fmtNum(tp)), []check{{"throughput", tp, 30000 / l, false, " events/s"}}
			})},
		{"work left after the load stops", "still busy > 5 min (push-rule and notification backlog)", "idle within 1 s", busyCell},
		{"server memory (RSS) idle → after the run", "59 MB → 220 MB", "≤ 25 MB → ≤ 80 MB", memoryCell},
		{"disk per message", "16 KB", "≤ 2 KB",
			func(rs runs, l float64) string {
				a := rs.get("send_one_room")
				if len(a.usable) == 0 {
					return a.failure()
				}
				b, ok := a.med(fDiskPerOp)
				if !ok {
					return "not measured (no --disk)"
				}
				return fmt.Sprintf("%s KB", fmtNum(b/1024)) + verdict([]check{{"disk", b / 1024, 2 * l, true, " KB"}})
			}},
		{"register (`m.login.dummy`), C=8 — not in the issue's table", "—", "—",
			scenarioCell("register", func(a agg, _ float64) (string, []check) {
				tp, _ := a.med(fThroughput)
				p50, _ := a.med(fP50)
				return fmt.Sprintf("%s users/s, p50 %s ms", fmtNum(tp), fmtNum(p50)), nil
			})},
	}
}

// busyCell is the longest the server stayed busy after any scenario.
func busyCell(rs runs, l float64) string {
	worst, where, capped := -1.0, "", false
	for _, name := range scenarioOrder {
		a := rs.get(name)
		if v, ok := a.med(fBusy); ok && v > worst {
			worst, where = v, name
			capped = slices.ContainsFunc(a.usable, func(r Result) bool { return r.BusyCapped })
		}
	}
	if worst < 0 {
		if rs.n == 0 {
			return "not run"
		}
		return "not measured (no --pid, or no scenario completed)"
	}
	s := fmt.Sprintf("idle within %s s (longest, after %s)", fmtNum(worst), where)
	if capped {
		s = fmt.Sprintf("still busy after %s s (after %s)", fmtNum(worst), where)
	}
	return s + wholeRunVerdict(rs, []check{{"busy", worst, 1 * l, true, " s"}})
}

// wholeRunVerdict judges a figure about the whole run only when every
// scenario produced figures: an idle, small server that did nothing has
// not met a target about the load.
func wholeRunVerdict(rs runs, checks []check) string {
	ran := 0
	for _, name := range scenarioOrder {
		if len(rs.get(name).usable) > 0 {
			ran++
		}
	}
	if ran < len(scenarioOrder) {
		return fmt.Sprintf(" (not judged: only %d of %d scenarios produced figures)", ran, len(scenarioOrder))
	}
	return verdict(checks)
}

func memoryCell(rs runs, l float64) string {
	a := rs.get("run_summary")
	idle, ok1 := a.med(fRSSIdle)
	end, ok2 := a.med(fRSSEnd)
	if !ok1 || !ok2 {
		if rs.n == 0 {
			return "not run"
		}
		return "not measured (no --pid)"
	}
	return fmt.Sprintf("%s MB → %s MB", fmtNum(idle), fmtNum(end)) +
		wholeRunVerdict(rs, []check{{"idle RSS", idle, 25 * l, true, " MB"}, {"RSS after", end, 80 * l, true, " MB"}})
}

// fmtNum prints with thousands separators and fewer decimals as numbers
// grow: 0.123, 1.23, 12.3, 1,234.
func fmtNum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	abs := math.Abs(v)
	var s string
	switch {
	case abs == 0:
		return "0"
	case v == math.Trunc(v) && abs >= 1:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case abs < 1:
		s = strconv.FormatFloat(v, 'f', 3, 64)
	case abs < 10:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	case abs < 100:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, ch := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

const (
	pprofBegin = "<!-- pprof:begin -->"
	pprofEnd   = "<!-- pprof:end -->"
)

const defaultPprof = `No profile has been recorded yet. To profile the server under load, run it
with a CPU profile (or ` + "`go tool pprof`" + ` against a pprof endpoint when one is
served), drive it with ` + "`myelin-load --scenarios send_one_room`" + `, and write here
what the top of ` + "`pprof -top`" + ` shows and what was changed because of it.`

// keptPprof returns the hand-written findings of an existing page.
func keptPprof(old []byte) string {
	_, rest, ok := strings.Cut(string(old), pprofBegin)
	if !ok {
		return defaultPprof
	}
	body, _, ok := strings.Cut(rest, pprofEnd)
	if !ok {
		return defaultPprof
	}
	if body = strings.TrimSpace(body); body == "" {
		return defaultPprof
	}
	return body
}

// machineInfo describes where the figures were taken.
type machineInfo struct {
	CPUs   int
	Model  string
	MemGiB float64
	Kernel string
}

func machine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), Model: "unknown CPU"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) == 2 {
					kb, _ := strconv.ParseFloat(f[0], 64)
					m.MemGiB = kb / (1 << 20)
				}
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

func renderReport(o reportOptions, sq, pg runs, bench []byte, pprof string, mi machineInfo) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Myelin performance\n\n")
	w("Written by `make bench` (`scripts/bench.sh`, which runs `myelin-load` and `myelin-load report`).\n")
	w("Everything here is regenerated on each run except the pprof findings section.\n\n")
	commit := o.Commit
	if commit == "" {
		commit = "unknown"
	}
	w("- **Commit:** `%s`\n", commit)
	w("- **Date:** %s\n", o.Date)
	w("- **Machine:** %d CPUs (nproc), %s, %.1f GiB RAM, Linux %s, %s/%s, %s\n",
		mi.CPUs, mi.Model, mi.MemGiB, mi.Kernel, runtime.GOOS, runtime.GOARCH, runtime.Version())
	w("- **Runs:** SQLite %d, PostgreSQL 15 %d; each figure is the median over the runs that produced figures.\n", sq.n, pg.n)
	w("- **Durability:** %s.\n", o.Durability)
	w("- **Workload:** the load tool's defaults — 50 users, 8 concurrent clients, 2,000 messages of 100 bytes; each scenario's exact parameters are in the details below.\n\n")

	w("## Results\n\n")
	w("| scenario | Dendrite 0.15.2 (SQLite, quiet machine) | Myelin target (SQLite) | Myelin, SQLite%s | Myelin, PostgreSQL 15%s |\n",
		durabilityLabel(o.Durability), durabilityLabel(o.Durability))
	w("|---|---|---|---|---|\n")
	for _, r := range tableRows() {
		w("| %s | %s | %s | %s | %s |\n", r.title, r.dendrite, r.target, r.cell(sq, 1), r.cell(pg, 2))
	}
	w("\n✅ target met, ❌ missed (by how much). PostgreSQL is judged against half the targets: half the\n")
	w("throughput, twice every other bound. Figures are medians over runs; a scenario that failed in every\n")
	w("run shows its error. Disk per message is the growth of the data directory (SQLite: database + WAL;\n")
	w("PostgreSQL: `base/`) during the one-room send, per message.\n")
	for _, n := range o.Notes {
		w("\n> %s\n", n)
	}

	for _, e := range []struct {
		name string
		rs   runs
	}{{"SQLite", sq}, {"PostgreSQL 15", pg}} {
		w("\n## Details: %s%s\n\n", e.name, durabilityLabel(o.Durability))
		if e.rs.n == 0 {
			w("Not run.\n")
			continue
		}
		w("| scenario | status | runs with figures | count | per second | p50 ms | p95 ms | p99 ms | errors | 429s | server CPU ms/op | busy after s | RSS before → after MB | parameters / first error |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, name := range append(slices.Clone(scenarioOrder), "soak") {
			a := e.rs.get(name)
			if len(a.all) == 0 {
				continue
			}
			w("| %s | %s | %d/%d |", name, statusOf(a), len(a.usable), len(a.all))
			if len(a.usable) == 0 {
				w(" | | | | | | | | | | %s |\n", a.failure())
				continue
			}
			count, _ := a.med(fCount)
			w(" %s |", fmtNum(math.Round(count)))
			for _, f := range []func(Result) (float64, bool){fThroughput, fP50, fP95, fP99} {
				v, _ := a.med(f)
				w(" %s |", fmtNum(v))
			}
			errs, _ := a.med(fErrors)
			w(" %s |", fmtNum(math.Round(errs)))
			rl := 0.0
			for _, r := range a.usable {
				rl = max(rl, float64(r.RateLimited))
			}
			w(" %s |", fmtNum(rl))
			for _, f := range []func(Result) (float64, bool){fCPUPerOp, fBusy} {
				if v, ok := a.med(f); ok {
					w(" %s |", fmtNum(v))
				} else {
					w(" — |")
				}
			}
			before, ok1 := a.med(opt(func(r Result) *float64 { return r.RSSBeforeMB }))
			after, ok2 := a.med(opt(func(r Result) *float64 { return r.RSSAfterMB }))
			if ok1 && ok2 {
				w(" %s → %s |", fmtNum(before), fmtNum(after))
			} else {
				w(" — |")
			}
			extra := params(a.usable[0].Params)
			if first := firstError(a); first != "" {
				extra += "; error: " + truncate(first, 160)
			}
			w(" %s |\n", extra)
		}
	}

	w("\n## Go benchmarks\n\n")
	switch {
	case o.Bench == "":
		w("Not run.\n")
	default:
		if o.BenchExit != 0 {
			w("`go test -bench` exited with status %d; its failures are in the output below.\n\n", o.BenchExit)
		}
		lines := benchLines(bench)
		if len(lines) == 0 {
			w("No benchmark ran (no `Benchmark…` functions in the module yet).\n")
		} else {
			w("```text\n%s\n```\n", strings.Join(lines, "\n"))
		}
	}

	w("\n## pprof findings\n\n%s\n%s\n%s\n", pprofBegin, pprof, pprofEnd)

	w("\n## How to reproduce\n\n")
	w("```sh\nmake bench                       # both engines, RUNS=3 by default\nRUNS=1 scripts/bench.sh          # quicker\n")
	w("go run ./cmd/myelin-load --help  # the load tool alone, against any homeserver on this machine\n```\n")
	return b.String()
}

func statusOf(a agg) string {
	counts := map[string]int{}
	for _, r := range a.all {
		counts[r.Status]++
	}
	var parts []string
	for _, s := range []string{"ok", "partial", "failed"} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", s, counts[s]))
		}
	}
	return strings.Join(parts, " ")
}

func firstError(a agg) string {
	for _, r := range a.all {
		if r.Error != "" {
			return r.Error
		}
	}
	return ""
}

func params(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(parts, " ")
}

// benchLines keeps what matters of go test -bench output: the results and
// per-package status, without the test noise.
func benchLines(out []byte) []string {
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r ")
		switch {
		case strings.HasPrefix(line, "Benchmark"),
			strings.HasPrefix(line, "pkg: "),
			strings.HasPrefix(line, "cpu: "),
			strings.HasPrefix(line, "FAIL"),
			strings.HasPrefix(line, "--- FAIL"),
			strings.HasPrefix(line, "panic:"):
			keep = append(keep, line)
		}
	}
	return keep
}

// durabilityLabel marks a column or section measured with anything but the
// default durability, so relaxed figures cannot pass for default ones.
func durabilityLabel(d string) string {
	if d == "" || d == "default" || strings.HasPrefix(d, "the defaults") || d == "full" {
		return ""
	}
	return " (durability: " + d + ")"
}
