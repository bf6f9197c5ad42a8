package clientapi

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"myelin/internal/apierr"
)

func TestValidSigilID(t *testing.T) {
	for _, tc := range []struct {
		id    string
		sigil byte
		ok    bool
	}{
		{"!abc:example.org", '!', true},
		{"!abc:example.org:8448", '!', true},
		{"!" + strings.Repeat("A", 43), '!', true}, // v12: no domain
		{"!a", '!', true},
		{"$abc", '$', true},
		{"$abc:example.org", '$', true},
		{"", '!', false},
		{"!", '!', false},
		{"abc:example.org", '!', false},
		{"$abc", '!', false},
		{"!abc", '$', false},
		{"!:example.org", '!', false},
		{"!abc:", '!', false},
		{"!a\x00b", '!', false},
		{"!\xff\xfe", '!', false},
		{"!" + strings.Repeat("a", 254), '!', true},
		{"!" + strings.Repeat("a", 255), '!', false},
	} {
		if got := validSigilID(tc.id, tc.sigil); got != tc.ok {
			t.Errorf("validSigilID(%.30q, %c) = %v, want %v", tc.id, tc.sigil, got, tc.ok)
		}
	}
}

func TestValidUserIDShape(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"@alice:example.org", true},
		{"@a:b", true},
		{"alice:example.org", false},
		{"@alice", false},
		{"@:example.org", false},
		{"@alice:", false},
		{"@" + strings.Repeat("a", 250) + ":ex.org", false},
	} {
		if got := validUserIDShape(tc.id); got != tc.ok {
			t.Errorf("validUserIDShape(%.30q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

func TestStreamPosition(t *testing.T) {
	for _, tc := range []struct {
		token string
		pos   int64
		ok    bool
	}{
		{"123", 123, true},
		{"0", 0, true},
		{"s123", 123, true},
		{"s123_4_5", 123, true},
		{"t42.7", 42, true},
		{"", 0, false},
		{"s", 0, false},
		{"abc", 0, false},
		{"s12x", 0, false},
		{"-5", 0, false},
		{"s9999999999999999999", 0, false}, // over 18 digits
		{"12 ", 0, false},
	} {
		pos, ok := streamPosition(tc.token)
		if ok != tc.ok || (ok && pos != tc.pos) {
			t.Errorf("streamPosition(%q) = %d, %v; want %d, %v", tc.token, pos, ok, tc.pos, tc.ok)
		}
	}
}

func TestValidOrder(t *testing.T) {
	for _, tc := range []struct {
		order string
		ok    bool
	}{
		{"a", true},
		{" ", true},
		{"~", true},
		{strings.Repeat("x", 50), true},
		{strings.Repeat("x", 51), false},
		{"", false},
		{"tab\there", false},
		{"é", false},
		{"\x7f", false},
	} {
		if got := validOrder(tc.order); got != tc.ok {
			t.Errorf("validOrder(%q) = %v, want %v", tc.order, got, tc.ok)
		}
	}
}

// TestSortChildren is the spec's own example ("Ordering of children within
// a space"): b, a, c by order; then e, d by timestamp.
func TestSortChildren(t *testing.T) {
	mk := func(key, order string, ts int64) child {
		return child{stripped: childStateJSON{StateKey: key, OriginServerTS: ts}, order: order}
	}
	cs := []child{
		mk("!b:example.org", " ", 1640341000000),
		mk("!a:example.org", "aaaa", 1640141000000),
		mk("!c:example.org", "first", 1640841000000),
		mk("!e:example.org", "", 1640641000000),
		mk("!d:example.org", "", 1640741000000),
		// Ties: same order → timestamp; same timestamp → room ID.
		mk("!g:example.org", "", 1640741000000),
		mk("!f:example.org", "", 1640741000000),
		mk("!z:example.org", "aaaa", 1640000000000),
	}
	sortChildren(cs)
	var got []string
	for _, c := range cs {
		got = append(got, c.stripped.StateKey[1:2])
	}
	if want := []string{"b", "z", "a", "c", "e", "d", "f", "g"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestParseHierarchyParams(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  hierarchyParams
		err   bool
	}{
		{"", hierarchyParams{limit: defaultHierarchyLimit, maxDepth: defaultHierarchyDepth}, false},
		{"limit=5&max_depth=2&suggested_only=true", hierarchyParams{limit: 5, maxDepth: 2, suggestedOnly: true}, false},
		{"limit=100000", hierarchyParams{limit: maxHierarchyLimit, maxDepth: defaultHierarchyDepth}, false},
		{"max_depth=99", hierarchyParams{limit: defaultHierarchyLimit, maxDepth: maxHierarchyDepth}, false},
		{"max_depth=0", hierarchyParams{limit: defaultHierarchyLimit, maxDepth: 0}, false},
		{"limit=5&from=5_false_10", hierarchyParams{limit: 5, maxDepth: 10, offset: 5}, false},
		{"suggested_only=true&max_depth=3&from=7_true_3", hierarchyParams{limit: defaultHierarchyLimit, maxDepth: 3, suggestedOnly: true, offset: 7}, false},
		{"limit=0", hierarchyParams{}, true},
		{"limit=-3", hierarchyParams{}, true},
		{"limit=x", hierarchyParams{}, true},
		{"max_depth=-1", hierarchyParams{}, true},
		{"suggested_only=yes", hierarchyParams{}, true},
		{"from=5_false_3", hierarchyParams{}, true},  // max_depth changed
		{"from=5_true_10", hierarchyParams{}, true},  // suggested_only changed
		{"from=0_false_10", hierarchyParams{}, true}, // offsets start at 1
		{"from=x_false_10", hierarchyParams{}, true},
		{"from=5_false", hierarchyParams{}, true},
		{"from=99999_false_10", hierarchyParams{}, true},
	} {
		r := httptest.NewRequest("GET", "/x?"+tc.query, nil)
		got, err := parseHierarchyParams(r)
		if tc.err {
			if e, ok := apierr.As(err); !ok || e.Code != "M_INVALID_PARAM" {
				t.Errorf("%q: err %v, want M_INVALID_PARAM", tc.query, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q = %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
	p := hierarchyParams{limit: 3, maxDepth: 4, suggestedOnly: true}
	if tok := p.token(6); tok != "6_true_4" {
		t.Fatalf("token = %s", tok)
	}
}
