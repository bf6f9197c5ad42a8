package pushrules

import (
	"regexp"
	"strings"
	"sync"
)

// globKey identifies a compiled pattern: the same glob compiles
// differently for whole-value matches and for content.body, where it may
// match any substring bounded by word boundaries.
type globKey struct {
	pattern string
	words   bool
}

// globs caches compiled patterns for the life of the process: every rule
// of every user shares one compiled form per distinct pattern, so
// evaluating an event for many members compiles nothing. Patterns are
// few (the defaults' constants plus users' own rules); literal patterns
// never reach the cache (see matcher).
var globs sync.Map // globKey → *regexp.Regexp

// compileGlob returns the cached regexp for a glob: '*' is any run of
// characters, '?' exactly one, everything else literal, case-insensitive.
func compileGlob(pattern string, words bool) *regexp.Regexp {
	k := globKey{pattern, words}
	if re, ok := globs.Load(k); ok {
		return re.(*regexp.Regexp)
	}
	var b strings.Builder
	b.WriteString(`(?is)`)
	if words {
		b.WriteString(`(?:^|[^A-Za-z0-9_])`)
	} else {
		b.WriteString(`^`)
	}
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	if words {
		b.WriteString(`(?:[^A-Za-z0-9_]|$)`)
	} else {
		b.WriteString(`$`)
	}
	re := regexp.MustCompile(b.String()) // every rune is quoted: always valid
	actual, _ := globs.LoadOrStore(k, re)
	return actual.(*regexp.Regexp)
}

// matcher matches one glob. A pattern without wildcards is compared
// directly (most patterns: event types, the user's own ID), so it needs
// no regexp at all.
type matcher struct {
	literal string // lower-cased; used when re is nil
	words   bool
	re      *regexp.Regexp
}

func newMatcher(pattern string, words bool) matcher {
	if !strings.ContainsAny(pattern, "*?") {
		return matcher{literal: strings.ToLower(pattern), words: words}
	}
	return matcher{re: compileGlob(pattern, words), words: words}
}

// match tests value; lower is value already lower-cased by the caller
// (computed once per event).
func (m matcher) match(value, lower string) bool {
	if m.re != nil {
		return m.re.MatchString(value)
	}
	if !m.words {
		return lower == m.literal
	}
	return containsWord(lower, m.literal)
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// containsWord reports whether needle occurs in hay starting and ending at
// word boundaries (both already lower-cased).
func containsWord(hay, needle string) bool {
	if needle == "" {
		return false
	}
	for from := 0; from <= len(hay)-len(needle); {
		i := strings.Index(hay[from:], needle)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(needle)
		if (start == 0 || !isWordByte(hay[start-1])) && (end == len(hay) || !isWordByte(hay[end])) {
			return true
		}
		from = start + 1
	}
	return false
}
