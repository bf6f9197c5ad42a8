package results

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// PassList is the committed set of tests that pass: a CI run fails when any
// of them does not. Each entry is a Result key, "package test".
type PassList map[string]bool

// ReadPassList parses a pass list: one "package test" per line; blank lines
// and lines starting with # are ignored.
func ReadPassList(r io.Reader) (PassList, error) {
	pl := PassList{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pkg, test, ok := strings.Cut(line, " ")
		if !ok || pkg == "" || !strings.HasPrefix(test, "Test") || strings.ContainsAny(test, " \t") {
			return nil, fmt.Errorf("pass list line %d: want \"package TestName\", got %q", n, line)
		}
		pl[line] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read pass list: %w", err)
	}
	return pl, nil
}

// passListHeader explains the file to whoever opens it.
const passListHeader = `# Complement tests (and subtests) that pass against Myelin: "package test".
# CI (make conformance-ci) fails when any of them does not pass.
# make conformance adds newly passing tests; remove a line only with a reason
# in the commit message (e.g. the test was removed from Complement).
`

// Write writes the list sorted, with its header.
func (pl PassList) Write(w io.Writer) error {
	keys := make([]string, 0, len(pl))
	for k := range pl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	bw := bufio.NewWriter(w)
	bw.WriteString(passListHeader)
	for _, k := range keys {
		bw.WriteString(k)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write pass list: %w", err)
	}
	return nil
}

// Add adds every passing result and returns the keys that were new.
func (pl PassList) Add(rs []Result) []string {
	var added []string
	for _, r := range rs {
		if r.Outcome == Pass && !pl[r.Key()] {
			pl[r.Key()] = true
			added = append(added, r.Key())
		}
	}
	return added
}

// NotRun is the reason given for a listed test absent from a run.
const NotRun = "did not run"

// Regressions returns the listed tests that did not pass in rs, sorted:
// failed, skipped, or absent (never ran). Only packages in ran are checked,
// so a partial run does not report the packages it left out.
func (pl PassList) Regressions(rs []Result, ran []string) []Result {
	byKey := make(map[string]Result, len(rs))
	for _, r := range rs {
		byKey[r.Key()] = r
	}
	var out []Result
	for key := range pl {
		pkg, test, _ := strings.Cut(key, " ")
		if !slices.Contains(ran, pkg) {
			continue
		}
		r, ok := byKey[key]
		switch {
		case !ok:
			out = append(out, Result{Package: pkg, Test: test, Outcome: Fail, Reason: NotRun})
		case r.Outcome != Pass:
			out = append(out, r)
		}
	}
	Sort(out)
	return out
}

// Packages returns the packages that have listed tests, sorted.
func (pl PassList) Packages() []string {
	var out []string
	for key := range pl {
		pkg, _, _ := strings.Cut(key, " ")
		if !slices.Contains(out, pkg) {
			out = append(out, pkg)
		}
	}
	slices.Sort(out)
	return out
}

// RunPattern returns a `go test -run` pattern selecting exactly the
// top-level tests of pkg that have listed tests (subtests run with their
// parent), or "" if there are none.
func (pl PassList) RunPattern(pkg string) string {
	var tops []string
	for key := range pl {
		p, test, _ := strings.Cut(key, " ")
		top, _, _ := strings.Cut(test, "/")
		if q := regexp.QuoteMeta(top); p == pkg && !slices.Contains(tops, q) {
			tops = append(tops, q)
		}
	}
	if len(tops) == 0 {
		return ""
	}
	slices.Sort(tops)
	return "^(" + strings.Join(tops, "|") + ")$"
}
