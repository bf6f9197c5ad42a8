package media

import (
	"errors"
	"maps"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"myelin/internal/apierr"
)

func TestParseHTML(t *testing.T) {
	long := strings.Repeat("é", maxValueBytes) // 2 bytes each: cut at a rune boundary
	tests := []struct {
		name string
		page string
		want map[string]string
	}{
		{"og tags", `<html><head><title>Page</title>
			<meta property="og:title" content="The Rock" />
			<meta property="og:type" content="video.movie">
			<meta property="og:url" content="http://www.imdb.com/title/tt0117500/">
			<meta property="og:image" content="test.png"></head></html>`,
			map[string]string{"og:title": "The Rock", "og:type": "video.movie",
				"og:url": "http://www.imdb.com/title/tt0117500/", "og:image": "test.png"}},
		{"title fallback", `<title>  The Rock
			(1996) </title><meta name="description" content="A film">`,
			map[string]string{"og:title": "The Rock (1996)", "og:description": "A film"}},
		{"twitter fallbacks before title", `<title>T</title>
			<meta name="twitter:title" content="TW">
			<meta name="twitter:description" content="TD">
			<meta name="description" content="D">
			<meta name="twitter:image:src" content="/a.png">`,
			map[string]string{"og:title": "TW", "og:description": "TD", "og:image": "/a.png"}},
		{"og beats fallbacks", `<meta name="twitter:title" content="TW"><meta property="og:title" content="OG">`,
			map[string]string{"og:title": "OG"}},
		{"name=og and case", `<META NAME="OG:Title" CONTENT="Named">`,
			map[string]string{"og:title": "Named"}},
		{"first wins", `<meta property="og:image" content="1.png"><meta property="og:image" content="2.png">`,
			map[string]string{"og:image": "1.png"}},
		{"entities decoded", `<meta property="og:title" content="Tom &amp; Jerry &lt;3">`,
			map[string]string{"og:title": "Tom & Jerry <3"}},
		{"empty and missing content skipped", `<meta property="og:title" content="  "><meta property="og:type">`,
			map[string]string{}},
		{"bad keys dropped", `<meta property="og:" content="x"><meta property="og:a b" content="x"><meta property="og:ok" content="y">`,
			map[string]string{"og:ok": "y"}},
		{"script is not markup", `<script>var s = '<meta property="og:title" content="fake">';</script><title>Real</title>`,
			map[string]string{"og:title": "Real"}},
		{"comment is not markup", `<!-- <meta property="og:title" content="fake"> --><meta property="og:title" content="real">`,
			map[string]string{"og:title": "real"}},
		{"broken html keeps what came before", `<html><head><meta property="og:title" content="ok"><meta property="og:type" content="unterminated`,
			map[string]string{"og:title": "ok"}},
		{"unclosed title", `<title>never closed`, map[string]string{"og:title": "never closed"}},
		{"controls and invalid utf-8 cleaned", "<meta property=\"og:title\" content=\"a\x01b\tc \xff\">",
			map[string]string{"og:title": "a b c \uFFFD"}},
		{"long value truncated", `<meta property="og:description" content="` + long + `">`,
			map[string]string{"og:description": strings.Repeat("é", maxValueBytes/2)}},
		{"not html at all", "\x89PNG\r\n\x1a\n\x00\x00", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseHTML(strings.NewReader(tt.page))
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestParseHTMLBounds(t *testing.T) {
	// Tags past maxHTMLBytes are never read.
	huge := `<meta property="og:title" content="early">` + strings.Repeat("<p>filler</p>", maxHTMLBytes/13+1) +
		`<meta property="og:description" content="late">`
	got := parseHTML(strings.NewReader(huge))
	if got["og:title"] != "early" || got["og:description"] != "" {
		t.Errorf("huge page: %q", got)
	}
	// At most maxPreviewKeys og keys.
	var b strings.Builder
	for i := range 3 * maxPreviewKeys {
		b.WriteString(`<meta property="og:k` + strings.Repeat("x", i) + `" content="v">`)
	}
	if got := parseHTML(strings.NewReader(b.String())); len(got) != maxPreviewKeys {
		t.Errorf("%d keys, want %d", len(got), maxPreviewKeys)
	}
}

func TestResolveImage(t *testing.T) {
	base, _ := url.Parse("https://example.org/a/page.html?q=1")
	tests := []struct{ ref, want string }{
		{"test.png", "https://example.org/a/test.png"},
		{"/img/x.jpg", "https://example.org/img/x.jpg"},
		{"//cdn.example.net/x.png#frag", "https://cdn.example.net/x.png"},
		{"http://other.example/x.png", "http://other.example/x.png"},
		{"data:image/png;base64,AAAA", ""},
		{"javascript:alert(1)", ""},
		{"file:///etc/passwd", ""},
		{"https://user:pw@example.org/x.png", ""},
		{"", ""},
		{"http://[::1", ""},
	}
	for _, tt := range tests {
		got := resolveImage(base, tt.ref)
		s := ""
		if got != nil {
			s = got.String()
		}
		if s != tt.want {
			t.Errorf("resolveImage(%q) = %q, want %q", tt.ref, s, tt.want)
		}
	}
}

func TestPreviewURL(t *testing.T) {
	tests := []struct {
		raw, want, code string
	}{
		{"https://example.org/x?y=1#frag", "https://example.org/x?y=1", ""},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/", ""},
		{"", "", "M_MISSING_PARAM"},
		{"example.org", "", "M_INVALID_PARAM"},
		{"ftp://example.org/", "", "M_INVALID_PARAM"},
		{"file:///etc/passwd", "", "M_INVALID_PARAM"},
		{"http://:80/", "", "M_INVALID_PARAM"},
		{"https://u:p@example.org/", "", "M_INVALID_PARAM"},
		{"https://example.org/" + strings.Repeat("a", maxPreviewURLBytes), "", "M_INVALID_PARAM"},
	}
	for _, tt := range tests {
		u, err := previewURL(tt.raw)
		if tt.code != "" {
			if e, ok := apierrAs(err); !ok || e != tt.code {
				t.Errorf("previewURL(%.40q): %v, want %s", tt.raw, err, tt.code)
			}
			continue
		}
		if err != nil || u.String() != tt.want {
			t.Errorf("previewURL(%q) = %v, %v; want %s", tt.raw, u, err, tt.want)
		}
	}
}

func TestPreviewCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newPreviewCache(2, 1<<20)
	c.put("a", map[string]any{"og:title": "A"}, nil, now.Add(time.Minute))
	c.put("b", map[string]any{}, errors.New("failed"), now.Add(time.Minute))
	if res, _, ok := c.get("a", now); !ok || res["og:title"] != "A" { // a is now most recent
		t.Fatalf("a: %v %v", res, ok)
	}
	c.put("c", map[string]any{}, nil, now.Add(time.Minute)) // evicts b, the least recently used
	if _, _, ok := c.get("b", now); ok {
		t.Error("b not evicted")
	}
	if _, _, ok := c.get("a", now); !ok {
		t.Error("a evicted")
	}
	if _, _, ok := c.get("a", now.Add(time.Minute)); ok {
		t.Error("expired entry served")
	}
	if len(c.entries) != 1 || c.order.Len() != 1 {
		t.Errorf("%d entries, %d in order", len(c.entries), c.order.Len())
	}
	// The byte budget evicts too, and an entry over it is not kept.
	small := newPreviewCache(100, 600)
	big := map[string]any{"og:description": strings.Repeat("x", 400)}
	small.put("1", big, nil, now.Add(time.Minute))
	small.put("2", big, nil, now.Add(time.Minute))
	if _, _, ok := small.get("1", now); ok || small.bytes > 600 {
		t.Errorf("byte budget not enforced: %d bytes", small.bytes)
	}
	small.put("3", map[string]any{"og:description": strings.Repeat("x", 700)}, nil, now.Add(time.Minute))
	if _, _, ok := small.get("3", now); ok {
		t.Error("entry larger than the budget kept")
	}
}

func FuzzPreviewHTML(f *testing.F) {
	f.Add(`<html><head><title>t</title><meta property="og:title" content="x"><meta name="twitter:image" content="/i.png"></head>`)
	f.Add(`<meta property="og:a" content="&#0;&amp;&#xD800;">`)
	f.Add("<title>\xff\xfe</title><meta content=\"\" property=og:b>")
	f.Add(`<svg><title>in svg</title></svg><script><meta property="og:title" content="no">`)
	f.Fuzz(func(t *testing.T, page string) {
		got := parseHTML(strings.NewReader(page))
		if len(got) > maxPreviewKeys+3 { // og keys plus the three fallbacks
			t.Fatalf("%d keys", len(got))
		}
		for k, v := range got {
			if !ogKeyPattern.MatchString(k) {
				t.Fatalf("key %q", k)
			}
			if v == "" || len(v) > maxValueBytes || !utf8.ValidString(v) || strings.TrimSpace(v) != v {
				t.Fatalf("value %q for %s", v, k)
			}
			for _, r := range v {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in %q", v)
				}
			}
		}
	})
}

// apierrAs is err's Matrix error code.
func apierrAs(err error) (string, bool) {
	e, ok := apierr.As(err)
	if !ok {
		return "", false
	}
	return e.Code, true
}
