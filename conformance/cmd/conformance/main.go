// Command conformance runs Complement, the Matrix homeserver test suite,
// against Myelin processes (no Docker) and records the verdicts.
//
//	conformance run   full suite; writes docs/conformance/complement.jsonl and
//	                  the summary in docs/conformance.md, adds newly passing
//	                  tests to the pass list; fails on regressions
//	conformance ci    only the top-level tests on the pass list; fails if any
//	                  listed test or subtest does not pass; writes nothing
//	conformance smoke only the matrix-js-sdk smoke (conformance/jssdk)
//	conformance report rewrites the docs from the raw logs of the last run
//	                  (after editing docs/conformance/reasons.txt)
//	conformance check lint and unit tests of conformance/ itself (gofmt, vet,
//	                  staticcheck, go test -race; the overlay included)
//
// Run it through conformance/run.sh, which sets the environment the module
// download needs.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"myelin/conformance/harness"
	"myelin/conformance/report"
	"myelin/conformance/results"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// paths are the files a run reads and writes, relative to the repository.
type paths struct {
	summary  string // docs/conformance.md
	record   string // docs/conformance/complement.jsonl
	passList string // docs/conformance/complement-passing.txt
	reasons  string // docs/conformance/reasons.txt
	flaky    string // docs/conformance/flaky.txt
}

func repoPaths(repo string) paths {
	docs := filepath.Join(repo, "docs")
	return paths{
		summary:  filepath.Join(docs, "conformance.md"),
		record:   filepath.Join(docs, "conformance", "complement.jsonl"),
		passList: filepath.Join(docs, "conformance", "complement-passing.txt"),
		reasons:  filepath.Join(docs, "conformance", "reasons.txt"),
		flaky:    filepath.Join(docs, "conformance", "flaky.txt"),
	}
}

func run(ctx context.Context, args []string) (int, error) {
	mode := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("conformance "+mode, flag.ContinueOnError)
	work := fs.String("work", ".work", "work directory (Complement copy, binaries, server data, raw logs)")
	myelin := fs.String("myelin", "", "use this myelin binary instead of building ./cmd/myelin")
	pkgFlag := fs.String("packages", "", "comma-separated test packages (e.g. tests/csapi); default all (run) or those on the pass list (ci)")
	runFlag := fs.String("run", "", "go test -run pattern (run mode only; a partial run writes no docs)")
	timeout := fs.Duration("timeout", 0, "time limit per test package (default 30m for run, 10m for ci)")
	smoke := fs.Bool("smoke", true, "run: also run the matrix-js-sdk smoke (conformance/jssdk)")
	db := fs.String("db", "sqlite", "database engine of the servers: sqlite, or postgres (a throwaway cluster, or MYELIN_TEST_POSTGRES)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}

	confDir, err := conformanceDir()
	if err != nil {
		return 1, err
	}
	workDir := *work
	if !filepath.IsAbs(workDir) {
		workDir = filepath.Join(confDir, workDir)
	}
	h := &harness.Harness{
		ConformanceDir: confDir,
		RepoDir:        filepath.Dir(confDir),
		WorkDir:        workDir,
		Log:            os.Stdout,
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return 1, fmt.Errorf("create work dir: %w", err)
	}

	switch *db {
	case "sqlite":
	case "postgres":
		if mode != "run" && mode != "ci" {
			return 2, fmt.Errorf("-db postgres applies to run and ci")
		}
		pg, err := h.StartPostgres()
		if err != nil {
			return 1, err
		}
		defer pg.Stop()
		h.ServerEnv = pg.Env()
	default:
		return 2, fmt.Errorf("-db %q: want sqlite or postgres", *db)
	}

	switch mode {
	case "run":
		// Only the default configuration (every package, SQLite) is recorded.
		record := *pkgFlag == "" && *runFlag == "" && *db == "sqlite"
		return fullRun(ctx, h, *myelin, splitList(*pkgFlag), *runFlag, orDefault(*timeout, 30*time.Minute), *smoke, record)
	case "ci":
		return ciRun(ctx, h, *myelin, splitList(*pkgFlag), orDefault(*timeout, 10*time.Minute))
	case "smoke":
		return smokeRun(ctx, h, *myelin)
	case "report":
		return 0, reportFromLogs(ctx, h)
	case "check":
		mod, err := h.Complement(ctx)
		if err != nil {
			return 1, err
		}
		return 0, h.Check(ctx, mod)
	default:
		return 2, fmt.Errorf("unknown mode %q (run, ci, smoke, report, check)", mode)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// conformanceDir is the conformance module directory; run.sh starts the
// runner there.
func conformanceDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !bytes.Contains(gomod, []byte("module myelin/conformance\n")) {
		return "", fmt.Errorf("run from the conformance directory (use conformance/run.sh)")
	}
	return dir, nil
}

// suite is a prepared run: a server binary and compiled test packages.
type suite struct {
	h      *harness.Harness
	mod    harness.Module
	myelin string
	bins   map[string]string
}

func prepare(ctx context.Context, h *harness.Harness, myelin string, want []string) (*suite, []string, error) {
	if myelin == "" {
		bin, err := h.BuildMyelin(ctx)
		if err != nil {
			return nil, nil, err
		}
		myelin = bin
	} else if abs, err := filepath.Abs(myelin); err == nil {
		myelin = abs
	}
	mod, err := h.Complement(ctx)
	if err != nil {
		return nil, nil, err
	}
	all, err := mod.Packages()
	if err != nil {
		return nil, nil, err
	}
	pkgs := all
	if want != nil {
		for _, p := range want {
			if !slices.Contains(all, p) {
				return nil, nil, fmt.Errorf("no test package %q in complement (have %s)", p, strings.Join(all, ", "))
			}
		}
		pkgs = want
	}
	bins, err := h.CompileTests(ctx, mod, pkgs)
	if err != nil {
		return nil, nil, err
	}
	return &suite{h: h, mod: mod, myelin: myelin, bins: bins}, pkgs, nil
}

// runPackages runs the packages one after another and collects every
// verdict; patterns selects tests per package ("" = all). Raw test2json logs
// go to the work directory's logDir ("logs" holds the last full run, which
// `conformance report` reads).
func (s *suite) runPackages(ctx context.Context, pkgs []string, patterns map[string]string, timeout time.Duration, logDir string) (*results.Collector, error) {
	c := results.NewCollector()
	c.OnTopLevel = func(r results.Result) {
		fmt.Printf("  %-4s %s %s (%v)\n", strings.ToUpper(string(r.Outcome)), r.Package, r.Test, r.Elapsed.Round(10*time.Millisecond))
	}
	logDir = filepath.Join(s.h.WorkDir, logDir)
	// Server data left by test binaries that died mid-run.
	if err := os.RemoveAll(filepath.Join(s.h.WorkDir, "servers")); err != nil {
		return nil, fmt.Errorf("clear old server data: %w", err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	for _, pkg := range pkgs {
		start := time.Now()
		fmt.Printf("== %s\n", pkg)
		rawPath := filepath.Join(logDir, strings.ReplaceAll(pkg, "/", "_")+".json")
		raw, err := os.Create(rawPath)
		if err != nil {
			return nil, fmt.Errorf("create raw log: %w", err)
		}
		err = s.runResuming(ctx, c, pkg, patterns[pkg], timeout, raw)
		raw.Close()
		if err != nil {
			return nil, err
		}
		fmt.Printf("== %s done in %v (raw log %s)\n", pkg, time.Since(start).Round(time.Second), rawPath)
	}
	return c, nil
}

// runResuming runs a package; when its binary dies part-way (some
// Complement tests panic from a goroutine when the server misbehaves, which
// kills the whole binary), it runs it again skipping every top-level test
// already seen, until a run ends normally or adds no new test.
func (s *suite) runResuming(ctx context.Context, c *results.Collector, pkg, pattern string, timeout time.Duration, raw io.Writer) error {
	for {
		seen := c.TopLevel(pkg)
		before, _ := c.Package(pkg)
		opts := harness.RunOptions{
			MyelinBinary: s.myelin,
			Run:          pattern,
			Skip:         exactNames(seen),
			Timeout:      timeout,
			Raw:          raw,
		}
		if len(seen) > 0 {
			fmt.Printf("  (the test binary died after %d top-level tests: resuming %s with the rest)\n", len(seen), pkg)
		}
		if err := s.h.RunPackage(ctx, s.mod, pkg, s.bins[pkg], opts, c); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		after, _ := c.Package(pkg)
		if endedNormally(before, after) || len(c.TopLevel(pkg)) == len(seen) {
			return nil
		}
	}
}

// endedNormally tells a test binary that ran all its tests from one that
// died: a finished run ends with a package verdict after go test's final
// "PASS" or "FAIL" line.
func endedNormally(before, after results.PackageResult) bool {
	if after.Ends == before.Ends {
		return false
	}
	for i := len(after.Tail) - 1; i >= 0; i-- {
		if line := strings.TrimSpace(after.Tail[i]); line != "" {
			return line == "PASS" || line == "FAIL"
		}
	}
	return false
}

// exactNames is a -run/-skip pattern matching exactly the given top-level
// test names.
func exactNames(names []string) string {
	if len(names) == 0 {
		return ""
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return "^(" + strings.Join(quoted, "|") + ")$"
}

// printCounts prints pass/fail/skip per package and returns the packages
// that failed outside any test (TestMain error, crash).
func printCounts(c *results.Collector, pkgs []string) (broken []results.PackageResult) {
	rs := c.Results()
	tallies := report.ByPackage(rs)
	fmt.Printf("\n%-16s %27s   %27s\n", "package", "top-level pass/fail/skip", "incl. subtests pass/fail/skip")
	var total report.Tally
	for _, p := range pkgs {
		t := tallies[p]
		if t == nil {
			t = &report.Tally{}
		}
		fmt.Printf("%-16s %9d %8d %8d   %9d %8d %8d\n", p,
			t.TopLevel.Pass, t.TopLevel.Fail, t.TopLevel.Skip, t.All.Pass, t.All.Fail, t.All.Skip)
		total.Merge(*t)
	}
	fmt.Printf("%-16s %9d %8d %8d   %9d %8d %8d\n\n", "total",
		total.TopLevel.Pass, total.TopLevel.Fail, total.TopLevel.Skip, total.All.Pass, total.All.Fail, total.All.Skip)
	for _, p := range c.Packages() {
		if p.Outcome == results.Fail && tallies[p.Package] == nil {
			broken = append(broken, p)
			fmt.Printf("package %s failed before running any test:\n%s\n\n", p.Package, strings.Join(p.Tail, "\n"))
		}
	}
	return broken
}

func readPassList(path string) (results.PassList, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return results.PassList{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pass list: %w", err)
	}
	defer f.Close()
	return results.ReadPassList(f)
}

func readFlaky(path string) (results.Flaky, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open flaky list: %w", err)
	}
	defer f.Close()
	return results.ReadFlaky(f)
}

// judge splits the listed tests that did not pass into regressions and
// known flakes (docs/conformance/flaky.txt), prints both, and returns the
// regressions.
func judge(p paths, reg, all []results.Result) ([]results.Result, error) {
	flaky, err := readFlaky(p.flaky)
	if err != nil {
		return nil, err
	}
	real, flakes := flaky.Split(reg, all)
	if len(flakes) > 0 {
		fmt.Printf("known flakes (%s; not failing the run): %d\n", p.flaky, len(flakes))
		for _, r := range flakes {
			fmt.Printf("  %s %s: %s\n", r.Package, r.Test, r.Reason)
		}
	}
	printRegressions(real)
	return real, nil
}

func printRegressions(reg []results.Result) {
	if len(reg) == 0 {
		fmt.Println("no regressions: every test on the pass list passed")
		return
	}
	fmt.Printf("REGRESSIONS: %d test(s) on the pass list did not pass:\n", len(reg))
	for _, r := range reg {
		fmt.Printf("  %s %s: %s %s\n", r.Package, r.Test, r.Outcome, r.Reason)
	}
}

// fullRun runs the suite (all of it, or the packages in want and tests
// matching pattern). record writes the docs and grows the pass list; it is
// only set for the default run, whose results the docs describe.
func fullRun(ctx context.Context, h *harness.Harness, myelin string, want []string, pattern string, timeout time.Duration, smoke, record bool) (int, error) {
	started := time.Now()
	p := repoPaths(h.RepoDir)
	pass, err := readPassList(p.passList)
	if err != nil {
		return 1, err
	}
	s, pkgs, err := prepare(ctx, h, myelin, want)
	if err != nil {
		return 1, err
	}
	patterns := map[string]string{}
	for _, pkg := range pkgs {
		patterns[pkg] = pattern
	}
	partial := want != nil || pattern != ""
	logDir := "logs"
	if !record {
		logDir = "logs-partial"
	}
	c, err := s.runPackages(ctx, pkgs, patterns, timeout, logDir)
	if err != nil {
		return 1, err
	}
	rs := c.Results()
	broken := printCounts(c, pkgs)
	ran := slices.Clone(pkgs)
	if smoke && !partial {
		srs, err := runSmoke(ctx, s, logDir)
		if err != nil {
			return 1, err
		}
		rs = append(rs, srs...)
		results.Sort(rs)
		ran = append(ran, harness.SmokePackage)
	}

	reg := pass.Regressions(rs, ran)
	if partial {
		// A partial run can only judge the listed tests it ran.
		reg = slices.DeleteFunc(reg, func(r results.Result) bool { return r.Reason == results.NotRun })
	}
	if reg, err = judge(p, reg, rs); err != nil {
		return 1, err
	}

	if !record {
		fmt.Println("not the default full run: docs and pass list left unchanged")
	} else {
		took := time.Since(started)
		if err := writeDocs(h, p, s.mod, rs, c.Packages(), started, took); err != nil {
			return 1, err
		}
		info, err := json.Marshal(lastRun{Started: started, Duration: took})
		if err != nil {
			return 1, fmt.Errorf("encode last run info: %w", err)
		}
		if err := os.WriteFile(filepath.Join(h.WorkDir, lastRunFile), info, 0o644); err != nil {
			return 1, fmt.Errorf("write last run info: %w", err)
		}
		added := pass.Add(rs)
		if err := writePassList(p.passList, pass); err != nil {
			return 1, err
		}
		fmt.Printf("wrote %s, %s; pass list %s: %d entries, %d new\n", p.record, p.summary, p.passList, len(pass), len(added))
	}
	fmt.Printf("total time %v\n", time.Since(started).Round(time.Second))
	if len(reg) > 0 || len(broken) > 0 {
		return 1, nil
	}
	return 0, nil
}

func ciRun(ctx context.Context, h *harness.Harness, myelin string, want []string, timeout time.Duration) (int, error) {
	started := time.Now()
	pass, err := readPassList(repoPaths(h.RepoDir).passList)
	if err != nil {
		return 1, err
	}
	if len(pass) == 0 {
		fmt.Println("pass list is empty: nothing to check")
		return 0, nil
	}
	listed := pass.Packages()
	if want != nil {
		listed = want
	}
	withSmoke := slices.Contains(listed, harness.SmokePackage) && slices.Contains(pass.Packages(), harness.SmokePackage)
	pkgs := slices.DeleteFunc(slices.Clone(listed), func(p string) bool { return p == harness.SmokePackage })
	s, pkgs, err := prepare(ctx, h, myelin, pkgs)
	if err != nil {
		return 1, err
	}
	patterns := map[string]string{}
	var run []string
	for _, pkg := range pkgs {
		if pat := pass.RunPattern(pkg); pat != "" {
			patterns[pkg] = pat
			run = append(run, pkg)
		}
	}
	c, err := s.runPackages(ctx, run, patterns, timeout, "logs-ci")
	if err != nil {
		return 1, err
	}
	broken := printCounts(c, run)
	rs := c.Results()
	if withSmoke {
		srs, err := runSmoke(ctx, s, "logs-ci")
		if err != nil {
			return 1, err
		}
		rs = append(rs, srs...)
		run = append(run, harness.SmokePackage)
	}
	reg, err := judge(repoPaths(h.RepoDir), pass.Regressions(rs, run), rs)
	if err != nil {
		return 1, err
	}
	fmt.Printf("ci: %d listed tests checked in %v\n", len(pass), time.Since(started).Round(time.Second))
	if len(reg) > 0 || len(broken) > 0 {
		return 1, nil
	}
	return 0, nil
}

// lastRunFile (in the work directory) remembers when the last full run
// started and how long it took, for `conformance report`.
const lastRunFile = "last-run.json"

type lastRun struct {
	Started  time.Time
	Duration time.Duration
}

// reportFromLogs rebuilds the record and summary from the raw test2json
// logs the last full run left in the work directory.
func reportFromLogs(ctx context.Context, h *harness.Harness) error {
	mod, err := h.Complement(ctx)
	if err != nil {
		return err
	}
	logs, err := filepath.Glob(filepath.Join(h.WorkDir, "logs", "*.json"))
	if err != nil || len(logs) == 0 {
		return fmt.Errorf("no raw logs in %s: run the suite first", filepath.Join(h.WorkDir, "logs"))
	}
	var info lastRun
	data, err := os.ReadFile(filepath.Join(h.WorkDir, lastRunFile))
	if err != nil {
		return fmt.Errorf("read last run info (run the full suite first): %w", err)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return fmt.Errorf("parse last run info: %w", err)
	}
	c := results.NewCollector()
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open log: %w", err)
		}
		err = c.Read(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	p := repoPaths(h.RepoDir)
	if err := writeDocs(h, p, mod, c.Results(), c.Packages(), info.Started, info.Duration); err != nil {
		return err
	}
	fmt.Printf("rewrote %s and %s from %d raw logs\n", p.record, p.summary, len(logs))
	return nil
}

// runSmoke runs the matrix-js-sdk smoke, prints its steps, and keeps them as
// a test2json log in the work directory's logDir, beside the packages'.
func runSmoke(ctx context.Context, s *suite, logDir string) ([]results.Result, error) {
	fmt.Printf("== %s (matrix-js-sdk smoke)\n", harness.SmokePackage)
	start := time.Now()
	rs, err := s.h.Smoke(ctx, s.myelin)
	if err != nil {
		return nil, fmt.Errorf("matrix-js-sdk smoke: %w", err)
	}
	for _, r := range rs {
		line := fmt.Sprintf("  %-4s %s %s", strings.ToUpper(string(r.Outcome)), r.Package, r.Test)
		if r.Reason != "" && r.Outcome != results.Pass {
			line += ": " + r.Reason
		}
		fmt.Println(line)
	}
	fmt.Printf("== %s done in %v\n", harness.SmokePackage, time.Since(start).Round(time.Second))
	dir := filepath.Join(s.h.WorkDir, logDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	var events bytes.Buffer
	if err := results.WriteEvents(&events, rs); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, harness.SmokePackage+".json"), events.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write smoke log: %w", err)
	}
	return rs, nil
}

// smokeRun is `conformance smoke`: the matrix-js-sdk smoke alone.
func smokeRun(ctx context.Context, h *harness.Harness, myelin string) (int, error) {
	if myelin == "" {
		bin, err := h.BuildMyelin(ctx)
		if err != nil {
			return 1, err
		}
		myelin = bin
	} else if abs, err := filepath.Abs(myelin); err == nil {
		myelin = abs
	}
	rs, err := runSmoke(ctx, &suite{h: h, myelin: myelin}, "logs-partial")
	if err != nil {
		return 1, err
	}
	for _, r := range rs {
		if r.Outcome == results.Fail {
			return 1, nil
		}
	}
	return 0, nil
}

func writePassList(path string, pass results.PassList) error {
	var buf bytes.Buffer
	if err := pass.Write(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write pass list: %w", err)
	}
	return nil
}

func writeDocs(h *harness.Harness, p paths, mod harness.Module, rs []results.Result, pkgs []results.PackageResult, started time.Time, took time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(p.record), 0o755); err != nil {
		return fmt.Errorf("create docs dir: %w", err)
	}
	var rec bytes.Buffer
	if err := results.WriteRecord(&rec, rs); err != nil {
		return err
	}
	if err := os.WriteFile(p.record, rec.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write record: %w", err)
	}

	var reasons report.Reasons
	if f, err := os.Open(p.reasons); err == nil {
		reasons, err = report.ReadReasons(f)
		f.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open reasons: %w", err)
	}
	gen := report.Markdown(report.Run{
		Results:           rs,
		Packages:          pkgs,
		Reasons:           reasons,
		ComplementVersion: mod.Version,
		MyelinRevision:    revision(h.RepoDir),
		Started:           started,
		Duration:          took,
	})
	doc, err := os.ReadFile(p.summary)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read summary: %w", err)
	}
	if err := os.WriteFile(p.summary, []byte(report.Splice(string(doc), gen)), 0o644); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// revision names the Myelin commit that was tested.
func revision(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if exec.Command("git", "-C", repo, "diff", "--quiet", "HEAD", "--").Run() != nil {
		rev += " + uncommitted changes"
	}
	return rev
}
