package media

import (
	"strings"
	"testing"
)

func TestValidMediaID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"AQwafuaFswefuhsfAFAgsw", true},
		{"abc_DEF-123", true},
		{strings.Repeat("a", 255), true},
		{"", false},
		{strings.Repeat("a", 256), false},
		{"..", false},
		{"../etc/passwd", false},
		{"..%2Fetc", false},
		{"%2e%2e", false},
		{"a/b", false},
		{`a\b`, false},
		{"/etc/passwd", false},
		{"C:\\Windows", false},
		{"abc\x00def", false},
		{"abc\n", false},
		{"ab c", false},
		{"é", false},
		{"\u2024\u2024", false}, // ONE DOT LEADER, a traversal lookalike
		{"abc.png", false},
	} {
		if got := ValidMediaID(tc.id); got != tc.want {
			t.Errorf("ValidMediaID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestValidServerName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"example.org", true},
		{"example.org:8448", true},
		{"127.0.0.1", true},
		{"[::1]:8448", true},
		{"hs1", true},
		{"", false},
		{"..", true}, // dots and dashes are DNS characters; the name never reaches a path
		{"a/b", false},
		{"a%2Fb", false},
		{"a\x00b", false},
		{"a b", false},
		{"example.org:port", false},
		{"@user:example.org", false},
	} {
		if got := ValidServerName(tc.name); got != tc.want {
			t.Errorf("ValidServerName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewMediaID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newMediaID()
		if len(id) != idLength || !ValidMediaID(id) || strings.ContainsAny(id, "_-") {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}
