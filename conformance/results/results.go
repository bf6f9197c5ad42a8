// Package results owns the verdicts of a Complement run: it turns the event
// stream of `go tool test2json` into one Result per test and subtest, reads
// and writes the committed JSON-lines record and the pass list, and finds
// regressions (listed tests that did not pass).
package results

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Outcome is a test's verdict.
type Outcome string

// The verdicts, named as `go test` names them.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip"
)

// Result is the verdict of one test or subtest.
type Result struct {
	// Package is the test package relative to Complement's module root,
	// e.g. "tests/csapi".
	Package string `json:"package"`
	// Test is the full test name, subtests joined with "/".
	Test    string  `json:"test"`
	Outcome Outcome `json:"result"`
	// Reason is why a test was skipped. For failures it holds the first
	// error the test reported; that text varies between runs (user and room
	// IDs), so it is not written to the committed record.
	Reason string `json:"reason,omitempty"`
	// Elapsed is how long the test ran; not written to the record.
	Elapsed time.Duration `json:"-"`
	// Seq is the order the test started in (its package's run), so the
	// first failure of a test can be told from later ones caused by it.
	Seq int `json:"-"`
}

// TopLevel is the name of the top-level test a test belongs to.
func (r Result) TopLevel() string {
	top, _, _ := strings.Cut(r.Test, "/")
	return top
}

// Key identifies a test across runs: "package test".
func (r Result) Key() string { return r.Package + " " + r.Test }

// event is one line of test2json output.
type event struct {
	Action  string
	Package string
	Test    string  `json:",omitempty"`
	Output  string  `json:",omitempty"`
	Elapsed float64 `json:",omitempty"`
}

// testState accumulates the events of one test.
type testState struct {
	outcome    Outcome
	elapsed    float64
	firstError string // first line Complement's ct.Errorf/Fatalf coloured red
	complaint  string // first logged line that reads like an error (plain t.Fatalf)
	lastLog    string // last t.Log/Skip line
}

// ansiRed starts Complement's error messages (ct.Errorf, ct.Fatalf).
const ansiRed = "\x1b[31m"

var (
	ansiCodes = regexp.MustCompile("\x1b\\[[0-9;]*m")
	// logPrefix is what testing puts before t.Log output: "    file.go:12: ".
	logPrefix = regexp.MustCompile(`^\s+([\w.-]+\.go):\d+: `)
	// complaintWords mark a log line as a test's complaint when the test
	// failed without Complement's red error (a plain t.Fatalf).
	complaintWords = regexp.MustCompile(`(?i)fail|error|unexpected|expected|want|mismatch`)
)

// chattyFiles log requests and server output, never a test's complaint.
var chattyFiles = map[string]bool{"client.go": true, "test_package.go": true}

// Collector turns test2json events into results. Feed it whole streams with
// Read; it keeps only what the results need, not the output.
type Collector struct {
	// OnTopLevel, if set, is called when a top-level test finishes.
	OnTopLevel func(Result)

	tests    map[string]*testState // by Key
	order    []string              // keys in start order
	packages map[string]*PackageResult
	// lastPackage is where a non-JSON line (a crash message) belongs.
	lastPackage string
}

// PackageResult is the verdict of a whole test package; a package can fail
// without any test failing (a build error, TestMain exiting, a timeout).
type PackageResult struct {
	Package string
	Outcome Outcome
	Elapsed time.Duration
	// Tail is the package-level output (not attributed to a test), last
	// lines only: it explains a package that failed outside its tests.
	Tail []string
	// Ends counts the package-level verdicts seen: one per run of the test
	// binary that ended normally, none for a binary that crashed.
	Ends int
}

const packageTailLines = 40

// NewCollector returns an empty collector.
func NewCollector() *Collector {
	return &Collector{tests: map[string]*testState{}, packages: map[string]*PackageResult{}}
}

// Read consumes a test2json stream until EOF. Lines that are not JSON
// (a test binary that crashed before test2json framing) count as package
// output.
func (c *Collector) Read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			c.add(event{Action: "output", Package: c.lastPackage, Output: sc.Text() + "\n"})
			continue
		}
		c.add(ev)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read test2json stream: %w", err)
	}
	return nil
}

// add records one event.
func (c *Collector) add(ev event) {
	c.lastPackage = ev.Package
	pkg := ev.Package
	if ev.Test == "" {
		c.addPackageEvent(pkg, ev)
		return
	}
	key := pkg + " " + ev.Test
	st, ok := c.tests[key]
	if !ok {
		st = &testState{}
		c.tests[key] = st
		c.order = append(c.order, key)
	}
	if c.packages[pkg] == nil {
		// A test event first: the package exists even if it never ends.
		c.packages[pkg] = &PackageResult{Package: pkg}
	}
	switch ev.Action {
	case "output":
		line := strings.TrimRight(ev.Output, "\n")
		if strings.HasPrefix(line, "=== ") || strings.HasPrefix(line, "--- ") {
			return
		}
		if st.firstError == "" && strings.Contains(line, ansiRed) {
			st.firstError = cleanLine(line)
		}
		if m := logPrefix.FindStringSubmatch(line); m != nil {
			st.lastLog = cleanLine(line)
			if st.complaint == "" && !chattyFiles[m[1]] && complaintWords.MatchString(st.lastLog) {
				st.complaint = st.lastLog
			}
		}
	case "pass", "fail", "skip":
		st.outcome = Outcome(ev.Action)
		st.elapsed = ev.Elapsed
		if c.OnTopLevel != nil && !strings.Contains(ev.Test, "/") {
			c.OnTopLevel(c.result(key, st))
		}
	}
}

func (c *Collector) addPackageEvent(pkg string, ev event) {
	p, ok := c.packages[pkg]
	if !ok {
		p = &PackageResult{Package: pkg}
		c.packages[pkg] = p
	}
	switch ev.Action {
	case "output":
		p.Tail = append(p.Tail, strings.TrimRight(ev.Output, "\n"))
		if len(p.Tail) > packageTailLines {
			p.Tail = p.Tail[len(p.Tail)-packageTailLines:]
		}
	case "pass", "fail", "skip":
		// A package run more than once (resumed after a crash) keeps the
		// worst verdict.
		if p.Outcome != Fail {
			p.Outcome = Outcome(ev.Action)
		}
		p.Elapsed += seconds(ev.Elapsed)
		p.Ends++
	}
}

// cleanLine strips colour codes and the "file.go:12: " prefix.
func cleanLine(line string) string {
	line = ansiCodes.ReplaceAllString(line, "")
	line = logPrefix.ReplaceAllString(line, "")
	return strings.TrimSpace(line)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func (c *Collector) result(key string, st *testState) Result {
	pkg, test, _ := strings.Cut(key, " ")
	r := Result{Package: pkg, Test: test, Outcome: st.outcome, Elapsed: seconds(st.elapsed)}
	switch st.outcome {
	case Skip:
		r.Reason = st.lastLog
	case Fail:
		r.Reason = st.firstError
		if r.Reason == "" {
			r.Reason = st.complaint
		}
	case "":
		// Started but never finished: the binary timed out or crashed.
		r.Outcome = Fail
		r.Reason = "did not finish (test binary timed out or crashed)"
	}
	return r
}

// Results returns every test seen, sorted by package and name.
func (c *Collector) Results() []Result {
	out := make([]Result, 0, len(c.order))
	for i, key := range c.order {
		r := c.result(key, c.tests[key])
		r.Seq = i
		out = append(out, r)
	}
	Sort(out)
	return out
}

// TopLevel returns the names of the top-level tests of pkg that started.
func (c *Collector) TopLevel(pkg string) []string {
	var out []string
	for _, key := range c.order {
		p, test, _ := strings.Cut(key, " ")
		if p == pkg && !strings.Contains(test, "/") {
			out = append(out, test)
		}
	}
	return out
}

// Package returns the verdict of one package so far.
func (c *Collector) Package(pkg string) (PackageResult, bool) {
	p, ok := c.packages[pkg]
	if !ok {
		return PackageResult{}, false
	}
	return *p, true
}

// Packages returns the package verdicts, sorted by package.
func (c *Collector) Packages() []PackageResult {
	out := make([]PackageResult, 0, len(c.packages))
	for _, p := range c.packages {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PackageResult) int { return strings.Compare(a.Package, b.Package) })
	return out
}

// Sort orders results by package, then test name.
func Sort(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int {
		if c := strings.Compare(a.Package, b.Package); c != 0 {
			return c
		}
		return strings.Compare(a.Test, b.Test)
	})
}

// recordLine is the committed form of a Result: stable across runs.
type recordLine struct {
	Package string  `json:"package"`
	Test    string  `json:"test"`
	Outcome Outcome `json:"result"`
	Reason  string  `json:"reason,omitempty"`
}

// WriteRecord writes one JSON object per result, skip reasons included,
// failure messages and timings left out so the file only changes when a
// verdict does.
func WriteRecord(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range rs {
		line := recordLine{Package: r.Package, Test: r.Test, Outcome: r.Outcome}
		if r.Outcome == Skip {
			line.Reason = r.Reason
		}
		if err := enc.Encode(line); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
	}
	return nil
}

// ReadRecord reads what WriteRecord wrote.
func ReadRecord(r io.Reader) ([]Result, error) {
	var out []Result
	dec := json.NewDecoder(r)
	for {
		var line recordLine
		err := dec.Decode(&line)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read record: %w", err)
		}
		out = append(out, Result{Package: line.Package, Test: line.Test, Outcome: line.Outcome, Reason: line.Reason})
	}
}

// WriteEvents writes results as a test2json stream that a Collector reads
// back into the same results: verdicts and reasons of tests that were not
// run by `go test` (the matrix-js-sdk smoke) can then be kept with the raw
// logs of a run.
func WriteEvents(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	emit := func(ev event) error {
		if err := enc.Encode(ev); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
		return nil
	}
	pkgOutcome := map[string]Outcome{}
	for _, r := range rs {
		if err := emit(event{Action: "run", Package: r.Package, Test: r.Test}); err != nil {
			return err
		}
		switch {
		case r.Reason == "":
		case r.Outcome == Fail:
			err := emit(event{Action: "output", Package: r.Package, Test: r.Test, Output: "    result.go:1: " + ansiRed + r.Reason + "\x1b[39m\n"})
			if err != nil {
				return err
			}
		default:
			if err := emit(event{Action: "output", Package: r.Package, Test: r.Test, Output: "    result.go:1: " + r.Reason + "\n"}); err != nil {
				return err
			}
		}
		if err := emit(event{Action: string(r.Outcome), Package: r.Package, Test: r.Test, Elapsed: r.Elapsed.Seconds()}); err != nil {
			return err
		}
		if pkgOutcome[r.Package] != Fail {
			pkgOutcome[r.Package] = Pass
			if r.Outcome == Fail {
				pkgOutcome[r.Package] = Fail
			}
		}
	}
	for pkg, o := range pkgOutcome {
		if err := emit(event{Action: "output", Package: pkg, Output: strings.ToUpper(string(o)) + "\n"}); err != nil {
			return err
		}
		if err := emit(event{Action: string(o), Package: pkg}); err != nil {
			return err
		}
	}
	return nil
}
