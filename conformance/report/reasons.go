package report

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Reasons explains failures: an ordered list of patterns, each matched
// against "area package TestName first-error" of a failing top-level test
// (first-error is the first error Complement reported in the test or its
// subtests, e.g. "CSAPI.Must: POST http://…/createRoom returned non-2xx
// code: 404 …"). The first match gives the reason, so patterns can name a
// missing endpoint as well as a test.
type Reasons []reasonRule

type reasonRule struct {
	pattern *regexp.Regexp
	reason  string
}

// ReadReasons parses reasons.txt: "regexp<TAB>reason" per line; blank lines
// and lines starting with # are ignored.
func ReadReasons(r io.Reader) (Reasons, error) {
	var out Reasons
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		expr, reason, ok := strings.Cut(line, "\t")
		reason = strings.TrimSpace(reason)
		if !ok || reason == "" {
			return nil, fmt.Errorf("reasons line %d: want \"regexp<TAB>reason\"", n)
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("reasons line %d: %w", n, err)
		}
		out = append(out, reasonRule{re, reason})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read reasons: %w", err)
	}
	return out, nil
}

// unexplained groups failures nobody has looked at yet.
const unexplained = "not yet investigated (see the first error)"

// For returns the known reason a test fails, or the "not yet investigated"
// group.
func (rs Reasons) For(area Area, pkg, test, firstError string) string {
	top, _, _ := strings.Cut(test, "/")
	subject := area.Slug + " " + pkg + " " + top + " " + firstError
	for _, r := range rs {
		if r.pattern.MatchString(subject) {
			return r.reason
		}
	}
	return unexplained
}
