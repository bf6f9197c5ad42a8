package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFmtNum(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{0.1234, "0.123"},
		{1.234, "1.23"},
		{12.34, "12.3"},
		{50, "50"},
		{7, "7"},
		{123.4, "123"},
		{1736, "1,736"},
		{34812.6, "34,813"},
		{1234567, "1,234,567"},
		{-2500, "-2,500"},
	}
	for _, tt := range tests {
		if got := fmtNum(tt.in); got != tt.want {
			t.Errorf("fmtNum(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckVerdicts(t *testing.T) {
	tests := []struct {
		name   string
		checks []check
		want   string
	}{
		{"all met", []check{{"throughput", 2500, 2000, false, " msg/s"}, {"p99", 12, 20, true, " ms"}}, "✅"},
		{"on the bound is met", []check{{"p99", 20, 20, true, " ms"}}, "✅"},
		{"throughput short", []check{{"throughput", 1500, 2000, false, " msg/s"}}, "❌ throughput 1,500 msg/s < 2,000 msg/s (25% short)"},
		{"latency over", []check{{"p99", 50.5, 20, true, " ms"}}, "❌ p99 50.5 ms > 20 ms (2.5× the bound)"},
		{"no target", nil, ""},
		{"both listed", []check{{"throughput", 10, 20, false, ""}, {"p99", 30, 20, true, ""}}, "; "},
	}
	for _, tt := range tests {
		got := verdict(tt.checks)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("%s: verdict %q, want it to contain %q", tt.name, got, tt.want)
		}
	}
}

func writeRun(t *testing.T, dir, name string, results ...Result) string {
	t.Helper()
	var b bytes.Buffer
	for _, r := range results {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sendResult(tp, p99 float64) Result {
	return Result{Scenario: "send_one_room", Status: "ok", Count: 2000, Throughput: tp, P50MS: p99 / 2, P95MS: p99 * 0.9, P99MS: p99,
		CPUMSPerOp: ptr(0.3), BusyAfterS: ptr(0.2), DiskPerOpBytes: ptr(1024.0), Params: map[string]any{"messages": 2000}}
}

func TestReportMediansVerdictsFailuresAndKeptFindings(t *testing.T) {
	dir := t.TempDir()
	fail := Result{Scenario: "create_room", Status: "failed", Error: "POST /_matrix/client/v3/createRoom: HTTP 404 M_UNRECOGNIZED: Unrecognized request"}
	summary := Result{Scenario: "run_summary", Status: "ok", RSSIdleMB: ptr(18.0), RSSEndMB: ptr(60.0)}
	sq := []string{
		writeRun(t, dir, "s1.jsonl", sendResult(1000, 30), fail, summary),
		writeRun(t, dir, "s2.jsonl", sendResult(3000, 10), fail, summary),
		writeRun(t, dir, "s3.jsonl", sendResult(2500, 12), fail, summary),
	}
	slowBusy := Result{Scenario: "messages", Status: "ok", Count: 5000, Throughput: 40000, P50MS: 2, P95MS: 3, P99MS: 4, BusyAfterS: ptr(60.0), BusyCapped: true}
	pg := []string{writeRun(t, dir, "p1.jsonl", sendResult(900, 45), slowBusy)}
	bench := filepath.Join(dir, "bench.txt")
	if err := os.WriteFile(bench, []byte("goos: linux\npkg: myelin/canonicaljson\nBenchmarkEncode-2   1000   1234 ns/op\n=== RUN noise\nok  \tmyelin/canonicaljson\t1.2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "performance.md")
	const findings = "Half the CPU is in canonical JSON; see BenchmarkEncode."
	if err := os.WriteFile(out, []byte("old page\n"+pprofBegin+"\n"+findings+"\n"+pprofEnd+"\nold tail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"--sqlite", strings.Join(sq, ","), "--postgres", pg[0], "--bench", bench, "--out", out,
		"--commit", "abc1234", "--date", "2026-01-02", "--note", "PostgreSQL run 2 did not start"}
	if err := runReport(args, &stdout, &stderr); err != nil {
		t.Fatalf("report: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	line := func(prefix string) string {
		for _, l := range strings.Split(page, "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line starting with %q in:\n%s", prefix, page)
		return ""
	}
	for _, want := range []string{
		"`abc1234`", "2026-01-02", "SQLite 3, PostgreSQL 15 1", findings, "BenchmarkEncode-2", "pkg: myelin/canonicaljson",
		"PostgreSQL run 2 did not start", "## Details: SQLite", "messages=2000",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "old tail") || strings.Contains(page, "=== RUN") {
		t.Error("page keeps text outside the findings section, or test noise")
	}
	// Medians: 2,500 msg/s and p99 12 ms meet the SQLite target...
	send := line("| send into one room")
	if !strings.Contains(send, "2,500 msg/s, p50 6 ms, p99 12 ms, 0.300 ms server CPU/msg ✅") {
		t.Errorf("SQLite send cell wrong: %s", send)
	}
	// ...PostgreSQL's 900 msg/s misses half of 2,000, its p99 45 ms twice 20.
	if !strings.Contains(send, "900 msg/s") || !strings.Contains(send, "❌ throughput 900 msg/s < 1,000 msg/s (10% short); p99 45 ms > 40 ms") {
		t.Errorf("PostgreSQL send cell wrong: %s", send)
	}
	if c := line("| `createRoom`"); !strings.Contains(c, "failed: POST /_matrix/client/v3/createRoom: HTTP 404 M_UNRECOGNIZED") || !strings.Contains(c, "| not run |") {
		t.Errorf("createRoom row: %s", c)
	}
	// Whole-run figures are not judged while scenarios fail.
	if c := line("| server memory"); !strings.Contains(c, "18 MB → 60 MB (not judged: only 1 of 8 scenarios produced figures)") || !strings.Contains(c, "not measured") {
		t.Errorf("memory row: %s", c)
	}
	if c := line("| work left"); !strings.Contains(c, "idle within 0.200 s") || !strings.Contains(c, "still busy after 60 s (after messages) (not judged") {
		t.Errorf("busy row: %s", c)
	}
	if c := line("| disk per message"); !strings.Contains(c, "1 KB ✅") {
		t.Errorf("disk row: %s", c)
	}

	// A second run keeps the findings again.
	if err := runReport(args, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(out)
	if !strings.Contains(string(again), findings) || strings.Count(string(again), pprofBegin) != 1 {
		t.Error("findings lost or duplicated on regeneration")
	}
}

// With every scenario complete, the whole-run rows are judged.
func TestReportJudgesCompleteRuns(t *testing.T) {
	dir := t.TempDir()
	var results []Result
	for _, name := range scenarioOrder {
		results = append(results, Result{Scenario: name, Status: "ok", Count: 10, Throughput: 1, P50MS: 1, P95MS: 1, P99MS: 1, BusyAfterS: ptr(0.3)})
	}
	results[3].BusyAfterS = ptr(2.5)
	results = append(results, Result{Scenario: "run_summary", Status: "ok", RSSIdleMB: ptr(20.0), RSSEndMB: ptr(100.0)})
	run := writeRun(t, dir, "r.jsonl", results...)
	out := filepath.Join(dir, "p.md")
	var stdout, stderr bytes.Buffer
	if err := runReport([]string{"--sqlite", run, "--out", out}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(out)
	for _, want := range []string{
		"idle within 2.50 s (longest, after send_one_room) ❌ busy 2.50 s > 1 s",
		"20 MB → 100 MB ❌ RSS after 100 MB > 80 MB",
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestReportWithoutRuns(t *testing.T) {
	out := filepath.Join(t.TempDir(), "p.md")
	var stdout, stderr bytes.Buffer
	if err := runReport([]string{"--out", out}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(out)
	if !strings.Contains(string(page), "| not run | not run |") || !strings.Contains(string(page), defaultPprof) {
		t.Errorf("page:\n%s", page)
	}
}

func TestReportRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"--sqlite", bad, "--out", filepath.Join(dir, "x.md")},
		{"--sqlite", filepath.Join(dir, "missing.jsonl"), "--out", filepath.Join(dir, "x.md")},
	} {
		if err := runReport(args, &stdout, &stderr); err == nil {
			t.Errorf("report %v: no error", args)
		}
	}
}

func TestKeptPprof(t *testing.T) {
	tests := []struct {
		old, want string
	}{
		{"", defaultPprof},
		{"no markers", defaultPprof},
		{pprofBegin + "\n  \n" + pprofEnd, defaultPprof},
		{pprofBegin + " unterminated", defaultPprof},
		{"x " + pprofBegin + "\nfound it\n" + pprofEnd + " y", "found it"},
	}
	for _, tt := range tests {
		if got := keptPprof([]byte(tt.old)); got != tt.want {
			t.Errorf("keptPprof(%q) = %q, want %q", tt.old, got, tt.want)
		}
	}
}

func TestDurabilityLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"default", ""},
		{"full", ""},
		{"the defaults (database.durability: full — every commit fsynced, group commit)", ""},
		{"relaxed", " (durability: relaxed)"},
	} {
		if got := durabilityLabel(tc.in); got != tc.want {
			t.Errorf("durabilityLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
