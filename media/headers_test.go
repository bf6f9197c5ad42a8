package media

import (
	"mime"
	"net/http"
	"testing"
)

func TestDisposition(t *testing.T) {
	for _, tc := range []struct {
		contentType, filename string
		kind, name            string
	}{
		{"image/png", "cat.png", "inline", "cat.png"},
		{"IMAGE/PNG", "cat.png", "inline", "cat.png"},
		{"text/plain; charset=utf-8", "notes.txt", "inline", "notes.txt"},
		{"video/mp4", "", "inline", ""},
		{"text/html", "page.html", "attachment", "page.html"},
		{"image/svg+xml", "logo.svg", "attachment", "logo.svg"},
		{"application/pdf", "x-ray.pdf", "attachment", "x-ray.pdf"},
		{"application/octet-stream", "a", "attachment", "a"},
		{"not a type", "a", "attachment", "a"},
		{"image/png", "name;with;semicolons", "inline", "name;with;semicolons"},
		{"image/png", `quote"and\backslash`, "inline", `quote"and\backslash`},
		{"image/png", "☕ café.png", "inline", "☕ café.png"},
	} {
		d := Disposition(tc.contentType, tc.filename)
		kind, params, err := mime.ParseMediaType(d)
		if err != nil {
			t.Errorf("%q %q: %q does not parse: %v", tc.contentType, tc.filename, d, err)
			continue
		}
		if kind != tc.kind || params["filename"] != tc.name {
			t.Errorf("%q %q: got %s filename %q (%q), want %s %q", tc.contentType, tc.filename, kind, params["filename"], d, tc.kind, tc.name)
		}
	}
}

func TestSetServeHeaders(t *testing.T) {
	h := http.Header{}
	SetServeHeaders(h, "text/html", "x.html")
	for k, want := range map[string]string{
		"Content-Type":                 "text/html",
		"X-Content-Type-Options":       "nosniff",
		"Content-Security-Policy":      contentSecurityPolicy,
		"Cross-Origin-Resource-Policy": "cross-origin",
		"Content-Disposition":          `attachment; filename=x.html`,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	h = http.Header{}
	SetServeHeaders(h, "garbage(", "")
	if h.Get("Content-Type") != "application/octet-stream" || h.Get("Content-Disposition") != "attachment" {
		t.Errorf("unparsable type served as %q / %q", h.Get("Content-Type"), h.Get("Content-Disposition"))
	}
}

func TestNormaliseContentType(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "application/octet-stream",
		"image/png":                 "image/png",
		"img/png":                   "img/png",
		"Text/Plain; Charset=UTF-8": "text/plain; charset=UTF-8",
		"garbage(":                  "application/octet-stream",
		"text/html\r\nX-Evil: 1":    "application/octet-stream",
	} {
		if got := normaliseContentType(in); got != want {
			t.Errorf("normaliseContentType(%q) = %q, want %q", in, got, want)
		}
	}
}
