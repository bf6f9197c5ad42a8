package media

import (
	"mime"
	"net/http"
	"strings"
)

// contentSecurityPolicy is the policy the spec recommends for served media
// (plus media-src 'self', so audio and video in a sandboxed view can
// play): nothing in a served file can run script or load other resources.
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// inlineTypes are the spec's "Serving inline content" list: the only types
// served with Content-Disposition: inline. Everything else (HTML, SVG,
// XML, PDF, ...) is an attachment, so a browser will not render it in the
// server's origin.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// baseType is the lower-cased media type without parameters, or "" when
// contentType does not parse.
func baseType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

// normaliseContentType is what an upload's Content-Type is stored as: the
// parsed type with its parameters re-serialised, or
// application/octet-stream when absent or unparsable.
func normaliseContentType(contentType string) string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || len(contentType) > 255 {
		return "application/octet-stream"
	}
	if s := mime.FormatMediaType(mt, params); s != "" {
		return s
	}
	return "application/octet-stream"
}

// Disposition is the Content-Disposition for content of this type: inline
// only for the spec's allow-list, attachment otherwise; the file name as
// RFC 6266 allows: quoted, or the RFC 5987 extended filename* form for
// non-ASCII names.
func Disposition(contentType, filename string) string {
	kind := "attachment"
	if inlineTypes[baseType(contentType)] {
		kind = "inline"
	}
	if filename == "" {
		return kind
	}
	if d := mime.FormatMediaType(kind, map[string]string{"filename": filename}); d != "" {
		return d
	}
	return kind
}

// SetServeHeaders sets every header a media response carries: the stored
// type (never sniffed), the disposition, and the sandboxing headers.
func SetServeHeaders(h http.Header, contentType, filename string) {
	if baseType(contentType) == "" {
		contentType = "application/octet-stream"
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", Disposition(contentType, filename))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
}
