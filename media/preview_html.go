package media

import (
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// Limits on what a page may put into a preview. A preview is kept in a
// shared in-memory cache and sent to every client that asks, so what one
// page contributes is bounded whatever it contains.
const (
	// maxHTMLBytes is how much of a page is read: OpenGraph tags live in
	// <head>, which pages put first; the rest is never downloaded.
	maxHTMLBytes = 1 << 20
	// maxValueBytes truncates each value (at a rune boundary).
	maxValueBytes = 1000
	// maxPreviewKeys bounds the og:* keys taken from one page.
	maxPreviewKeys = 32
)

// ogKeyPattern is the shape of a key a preview may carry.
var ogKeyPattern = regexp.MustCompile(`^og:[a-z0-9_.:-]{1,64}$`)

// parseHTML reads OpenGraph metadata from (at most maxHTMLBytes of) a
// page: <meta property="og:*" content> (or name="og:*", which pages
// commonly use), the first of each key winning (OpenGraph arrays repeat
// og:image; the first is the preferred one). Missing og:title,
// og:description and og:image fall back to their twitter:* equivalents,
// then to <title> and <meta name="description">. Broken or truncated HTML
// yields whatever was read before the damage; values are valid UTF-8
// without control characters, whitespace collapsed, each at most
// maxValueBytes.
func parseHTML(r io.Reader) map[string]string {
	z := html.NewTokenizer(io.LimitReader(r, maxHTMLBytes))
	og := make(map[string]string)
	fallback := make(map[string]string) // twitter:* and name="description"
	title := ""
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			// io.EOF, a read error or the limit: use what was read.
			return finishPreview(og, fallback, title)
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "meta":
				if hasAttr {
					readMeta(z, og, fallback)
				}
			case "title":
				// <title> is raw text to the tokenizer: its content is the
				// next token. The first one wins (an <svg> may have its own).
				if tt == html.StartTagToken && title == "" && z.Next() == html.TextToken {
					title = cleanValue(string(z.Text()))
				}
			}
		}
	}
}

// readMeta takes one <meta> tag's property/name and content.
func readMeta(z *html.Tokenizer, og, fallback map[string]string) {
	var property, name, content string
	hasContent := false
	for {
		k, v, more := z.TagAttr()
		switch string(k) { // the tokenizer lower-cases attribute names
		case "property":
			property = strings.ToLower(strings.TrimSpace(string(v)))
		case "name":
			name = strings.ToLower(strings.TrimSpace(string(v)))
		case "content":
			content, hasContent = string(v), true
		}
		if !more {
			break
		}
	}
	if !hasContent {
		return
	}
	key := property
	if !strings.HasPrefix(key, "og:") && !strings.HasPrefix(key, "twitter:") {
		key = name
	}
	value := cleanValue(content)
	if value == "" {
		return
	}
	switch {
	case strings.HasPrefix(key, "og:"):
		if !ogKeyPattern.MatchString(key) || len(og) >= maxPreviewKeys {
			return
		}
		if _, seen := og[key]; !seen {
			og[key] = value
		}
	case key == "twitter:title" || key == "twitter:description" || key == "twitter:image" ||
		key == "twitter:image:src" || key == "description":
		if _, seen := fallback[key]; !seen {
			fallback[key] = value
		}
	}
}

// finishPreview fills missing og:title, og:description and og:image from
// the fallbacks.
func finishPreview(og, fallback map[string]string, title string) map[string]string {
	fill := func(key string, candidates ...string) {
		if _, ok := og[key]; ok {
			return
		}
		for _, c := range candidates {
			if c != "" {
				og[key] = c
				return
			}
		}
	}
	fill("og:title", fallback["twitter:title"], title)
	fill("og:description", fallback["twitter:description"], fallback["description"])
	fill("og:image", fallback["twitter:image"], fallback["twitter:image:src"])
	return og
}

// cleanValue makes a page's text safe to hand on: valid UTF-8 (pages in
// other charsets get replacement characters, never invalid JSON), control
// characters and runs of whitespace become one space, trimmed, truncated
// to maxValueBytes at a rune boundary.
func cleanValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(min(len(s), maxValueBytes))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			if b.Len()+1 > maxValueBytes {
				break
			}
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > maxValueBytes {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
