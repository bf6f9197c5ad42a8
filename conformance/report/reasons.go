package report

import (
	"io"
	"strings"

	"myelin/conformance/results"
)

// Reasons explains failures: an ordered list of patterns, each matched
// against "area package TestName first-error" of a failing top-level test
// (first-error is the first error Complement reported in the test or its
// subtests, e.g. "CSAPI.Must: POST http://…/createRoom returned non-2xx
// code: 404 …"). The first match gives the reason, so patterns can name a
// missing endpoint as well as a test.
type Reasons []results.Rule

// ReadReasons parses reasons.txt: "regexp<TAB>reason" per line; blank lines
// and lines starting with # are ignored.
func ReadReasons(r io.Reader) (Reasons, error) {
	rules, err := results.ReadRules(r, "reasons")
	return Reasons(rules), err
}

// unexplained groups failures nobody has looked at yet.
const unexplained = "not yet investigated (see the first error)"

// For returns the known reason a test fails, or the "not yet investigated"
// group.
func (rs Reasons) For(area Area, pkg, test, firstError string) string {
	top, _, _ := strings.Cut(test, "/")
	subject := area.Slug + " " + pkg + " " + top + " " + firstError
	for _, r := range rs {
		if r.Pattern.MatchString(subject) {
			return r.Reason
		}
	}
	return unexplained
}
