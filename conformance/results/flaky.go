package results

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Rule is one line of a rules file (flaky.txt, reasons.txt): a pattern and
// the reason it stands for.
type Rule struct {
	Pattern *regexp.Regexp
	Reason  string
}

// ReadRules parses a rules file: "regexp<TAB>reason" per line; blank lines
// and # comments are ignored. what names the file in errors.
func ReadRules(r io.Reader, what string) ([]Rule, error) {
	var out []Rule
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		expr, reason, ok := strings.Cut(line, "\t")
		reason = strings.TrimSpace(reason)
		if !ok || reason == "" {
			return nil, fmt.Errorf("%s line %d: want \"regexp<TAB>reason\"", what, n)
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", what, n, err)
		}
		out = append(out, Rule{re, reason})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}

// Flaky lists known causes of intermittent failures. A listed test that
// fails in a way a rule matches is reported as flaky instead of as a
// regression, until the cause is fixed and the rule removed.
type Flaky []Rule

// ReadFlaky parses flaky.txt, whose regexps are matched against
// "package test failure".
func ReadFlaky(r io.Reader) (Flaky, error) {
	rules, err := ReadRules(r, "flaky")
	return Flaky(rules), err
}

// match returns the reason of the first rule matching a failed result.
func (f Flaky) match(r Result) (string, bool) {
	subject := r.Key() + " " + r.Reason
	for _, rule := range f {
		if rule.Pattern.MatchString(subject) {
			return rule.Reason, true
		}
	}
	return "", false
}

// Split separates regressions into real ones and known flakes; flakes get
// the rule's reason put before theirs. A test that failed only because
// subtests failed (all of them known flakes, per all, the whole run) is a
// flake too: a parent fails whenever a child does.
func (f Flaky) Split(reg, all []Result) (real, flaky []Result) {
	for _, r := range reg {
		if reason, ok := f.match(r); ok {
			r.Reason = reason + " — " + r.Reason
			flaky = append(flaky, r)
			continue
		}
		if reason, ok := f.onlyFlakyChildren(r, all); ok {
			r.Reason = reason + " — failed only through flaky subtests"
			flaky = append(flaky, r)
			continue
		}
		real = append(real, r)
	}
	return real, flaky
}

// onlyFlakyChildren reports whether r has no failure of its own and every
// failed subtest of it is a known flake.
func (f Flaky) onlyFlakyChildren(r Result, all []Result) (string, bool) {
	if r.Reason != "" || r.Outcome != Fail {
		return "", false
	}
	reason, failed := "", 0
	for _, c := range all {
		if c.Package != r.Package || !strings.HasPrefix(c.Test, r.Test+"/") || c.Outcome != Fail {
			continue
		}
		if c.Reason == "" {
			continue // a parent in between; judged through its own children
		}
		failed++
		why, ok := f.match(c)
		if !ok {
			return "", false
		}
		reason = why
	}
	return reason, failed > 0
}
