// Package canonicaljson owns the strict check that a JSON document can be
// represented as Matrix Canonical JSON (appendices#canonical-json): valid
// UTF-8, no duplicate object keys, and numbers that are integers within
// ±(2^53−1) — no fractions, no exponents, no -0. NaN and Infinity are not
// JSON at all and fail the syntax check.
//
// It lives in internal/ rather than in the roomserver because the same rule
// guards every signed or hashed object the server accepts (event content,
// E2EE keys, federation requests), and it has no domain knowledge. Encoding
// to canonical form is gomatrixserverlib's job; this package only decides
// whether input is acceptable, fast and without allocating per value.
package canonicaljson

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxSafeInteger is 2^53−1, the largest integer Canonical JSON allows.
const MaxSafeInteger = 1<<53 - 1

// MaxDepth bounds nesting so hostile input cannot exhaust the stack.
const MaxDepth = 128

// Error says why input is not acceptable; Offset is the byte where the
// problem was found. Messages name the rule, never echo the input.
type Error struct {
	Offset int
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("canonical json: %s at byte %d", e.Reason, e.Offset)
}

// ErrInvalid matches every *Error with errors.Is.
var ErrInvalid = errors.New("canonical json: invalid")

// Is makes errors.Is(err, ErrInvalid) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Validate reports whether data is exactly one JSON value (surrounded by
// optional whitespace) that satisfies the Canonical JSON value rules.
func Validate(data []byte) error {
	s := scanner{data: data}
	s.skipWS()
	if err := s.value(0); err != nil {
		return err
	}
	s.skipWS()
	if s.pos != len(s.data) {
		return s.fail("trailing data after JSON value")
	}
	return nil
}

// ValidateObject is Validate for input that must be a JSON object, such as
// an event's content.
func ValidateObject(data []byte) error {
	s := scanner{data: data}
	s.skipWS()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		return s.fail("expected a JSON object")
	}
	return Validate(data)
}

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) fail(reason string) error { return &Error{Offset: s.pos, Reason: reason} }

func (s *scanner) skipWS() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) value(depth int) error {
	if s.pos >= len(s.data) {
		return s.fail("unexpected end of input")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.fail("invalid character (NaN, Infinity and bare words are not JSON)")
	}
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.pos += len(word)
	return nil
}

func (s *scanner) object(depth int) error {
	if depth > MaxDepth {
		return s.fail("nesting too deep")
	}
	s.pos++ // '{'
	s.skipWS()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	// Duplicate detection: objects are usually small, so a linear scan over
	// the raw key spans beats a map. Large objects switch to a map.
	var buf [16][2]int
	spans := buf[:0]
	var seen map[string]struct{}
	for {
		s.skipWS()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.fail("expected object key")
		}
		start := s.pos
		key, escaped, err := s.str()
		if err != nil {
			return err
		}
		if escaped {
			// Escapes mean the raw span differs from the decoded key; compare
			// decoded keys. Rare in practice.
			if seen == nil {
				seen = make(map[string]struct{}, len(spans)+4)
				for _, sp := range spans {
					seen[decodeString(s.data[sp[0]:sp[1]])] = struct{}{}
				}
			}
			k := decodeString(s.data[key[0]:key[1]])
			if _, dup := seen[k]; dup {
				s.pos = start
				return s.fail("duplicate object key")
			}
			seen[k] = struct{}{}
			spans = append(spans, key)
		} else if seen != nil {
			k := string(s.data[key[0]:key[1]])
			if _, dup := seen[k]; dup {
				s.pos = start
				return s.fail("duplicate object key")
			}
			seen[k] = struct{}{}
			spans = append(spans, key)
		} else {
			k := s.data[key[0]:key[1]]
			for _, sp := range spans {
				if string(s.data[sp[0]:sp[1]]) == string(k) {
					s.pos = start
					return s.fail("duplicate object key")
				}
			}
			spans = append(spans, key)
			if len(spans) > 16 {
				seen = make(map[string]struct{}, 32)
				for _, sp := range spans {
					seen[decodeString(s.data[sp[0]:sp[1]])] = struct{}{}
				}
			}
		}
		s.skipWS()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.fail("expected ':' after object key")
		}
		s.pos++
		s.skipWS()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipWS()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of input in object")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or '}' in object")
		}
	}
}

func (s *scanner) array(depth int) error {
	if depth > MaxDepth {
		return s.fail("nesting too deep")
	}
	s.pos++ // '['
	s.skipWS()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for {
		s.skipWS()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipWS()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of input in array")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or ']' in array")
		}
	}
}

// str scans a string starting at the opening quote. It returns the span of
// the raw contents (without quotes) and whether it contained escapes.
func (s *scanner) str() (span [2]int, escaped bool, err error) {
	s.pos++ // opening quote
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			span = [2]int{start, s.pos}
			s.pos++
			return span, escaped, nil
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return span, escaped, s.fail("unterminated escape")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) || !isHex4(s.data[s.pos+2:s.pos+6]) {
					return span, escaped, s.fail("invalid \\u escape")
				}
				s.pos += 6
			default:
				return span, escaped, s.fail("invalid escape")
			}
		case c < 0x20:
			return span, escaped, s.fail("control character in string")
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size <= 1 {
				return span, escaped, s.fail("invalid UTF-8")
			}
			s.pos += size
		}
	}
	return span, escaped, s.fail("unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// number accepts only the integer subset of JSON's number grammar and checks
// the magnitude without floating point, so 9007199254740993 is not rounded
// into range.
func (s *scanner) number() error {
	start := s.pos
	neg := false
	if s.data[s.pos] == '-' {
		neg = true
		s.pos++
	}
	if s.pos >= len(s.data) || s.data[s.pos] < '0' || s.data[s.pos] > '9' {
		return s.fail("invalid number")
	}
	if s.data[s.pos] == '0' {
		s.pos++
		if s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			return s.fail("leading zero in number")
		}
		if neg {
			s.pos = start
			return s.fail("-0 is not canonical")
		}
	} else {
		var v uint64
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			v = v*10 + uint64(s.data[s.pos]-'0')
			s.pos++
			if v > MaxSafeInteger {
				s.pos = start
				return s.fail("integer outside ±(2^53−1)")
			}
		}
	}
	if s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '.', 'e', 'E':
			s.pos = start
			return s.fail("floating-point numbers are not allowed")
		}
	}
	return nil
}

// decodeString decodes the raw contents of a JSON string (already validated)
// for duplicate-key comparison.
func decodeString(raw []byte) string {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hexVal(raw[i+1 : i+5]))
			i += 4
			// Surrogate pairs combine into one rune.
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				lo := rune(hexVal(raw[i+3 : i+7]))
				if lo >= 0xDC00 && lo < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				// A lone surrogate has no UTF-8 form; keep its code unit
				// behind 0xFF (never present in valid UTF-8) so distinct
				// inputs stay distinct.
				out = append(out, 0xFF, byte(r>>8), byte(r))
				continue
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, raw[i])
		}
	}
	return string(out)
}

func hexVal(b []byte) int {
	v := 0
	for _, c := range b {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= int(c - '0')
		case c >= 'a' && c <= 'f':
			v |= int(c-'a') + 10
		default:
			v |= int(c-'A') + 10
		}
	}
	return v
}
