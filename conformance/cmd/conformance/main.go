// Command conformance runs Complement, the Matrix homeserver test suite,
// against Myelin processes (no Docker) and records the verdicts.
//
//	conformance run   full suite; writes docs/conformance/complement.jsonl and
//	                  the summary in docs/conformance.md, adds newly passing
//	                  tests to the pass list; fails on regressions
//	conformance ci    only the top-level tests on the pass list; fails if any
//	                  listed test or subtest does not pass; writes nothing
//	conformance check go vet of the overlaid Complement packages and the
//	                  process deployer's own tests
//
// Run it through conformance/run.sh, which sets the environment the module
// download needs.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"myelin/conformance/harness"
	"myelin/conformance/report"
	"myelin/conformance/results"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == harness.NamespaceCommand {
		err := harness.NamespaceExec(os.Args[2:])
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		os.Exit(1)
	}
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
}

func repoPaths(repo string) paths {
	docs := filepath.Join(repo, "docs")
	return paths{
		summary:  filepath.Join(docs, "conformance.md"),
		record:   filepath.Join(docs, "conformance", "complement.jsonl"),
		passList: filepath.Join(docs, "conformance", "complement-passing.txt"),
		reasons:  filepath.Join(docs, "conformance", "reasons.txt"),
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

	switch mode {
	case "run":
		return fullRun(ctx, h, *myelin, splitList(*pkgFlag), *runFlag, orDefault(*timeout, 30*time.Minute))
	case "ci":
		return ciRun(ctx, h, *myelin, splitList(*pkgFlag), orDefault(*timeout, 10*time.Minute))
	case "check":
		mod, err := h.Complement(ctx)
		if err != nil {
			return 1, err
		}
		return 0, h.Check(ctx, mod)
	default:
		return 2, fmt.Errorf("unknown mode %q (run, ci, check)", mode)
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

// runPackages runs the packages one after another (they share the hsN
// addresses) and collects every verdict. patterns selects tests per package
// ("" = all).
func (s *suite) runPackages(ctx context.Context, pkgs []string, patterns map[string]string, timeout time.Duration) (*results.Collector, error) {
	c := results.NewCollector()
	c.OnTopLevel = func(r results.Result) {
		fmt.Printf("  %-4s %s %s (%v)\n", strings.ToUpper(string(r.Outcome)), r.Package, r.Test, r.Elapsed.Round(10*time.Millisecond))
	}
	logDir := filepath.Join(s.h.WorkDir, "logs")
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
		err = s.h.RunPackage(ctx, s.mod, pkg, s.bins[pkg], harness.RunOptions{
			MyelinBinary: s.myelin,
			Run:          patterns[pkg],
			Timeout:      timeout,
			Raw:          raw,
		}, c)
		raw.Close()
		if err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fmt.Printf("== %s done in %v (raw log %s)\n", pkg, time.Since(start).Round(time.Second), rawPath)
	}
	return c, nil
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

func fullRun(ctx context.Context, h *harness.Harness, myelin string, want []string, pattern string, timeout time.Duration) (int, error) {
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
	c, err := s.runPackages(ctx, pkgs, patterns, timeout)
	if err != nil {
		return 1, err
	}
	rs := c.Results()
	broken := printCounts(c, pkgs)
	partial := want != nil || pattern != ""

	var reg []results.Result
	if !partial {
		reg = pass.Regressions(rs, pkgs)
	} else {
		// A partial run can only judge the listed tests it ran.
		var ran []results.Result
		for _, r := range pass.Regressions(rs, pkgs) {
			if r.Reason != "did not run" {
				ran = append(ran, r)
			}
		}
		reg = ran
	}
	printRegressions(reg)

	if partial {
		fmt.Println("partial run: docs and pass list left unchanged")
	} else {
		if err := writeDocs(h, p, s.mod, rs, c.Packages(), started); err != nil {
			return 1, err
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
	pkgs := pass.Packages()
	if want != nil {
		pkgs = want
	}
	if len(pass) == 0 {
		fmt.Println("pass list is empty: nothing to check")
		return 0, nil
	}
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
	c, err := s.runPackages(ctx, run, patterns, timeout)
	if err != nil {
		return 1, err
	}
	broken := printCounts(c, run)
	reg := pass.Regressions(c.Results(), run)
	printRegressions(reg)
	fmt.Printf("ci: %d listed tests checked in %v\n", len(pass), time.Since(started).Round(time.Second))
	if len(reg) > 0 || len(broken) > 0 {
		return 1, nil
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

func writeDocs(h *harness.Harness, p paths, mod harness.Module, rs []results.Result, pkgs []results.PackageResult, started time.Time) error {
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
		Duration:          time.Since(started),
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
