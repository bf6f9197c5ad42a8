// Package httpapi owns the mechanics shared by every HTTP surface of the
// server: the router defaults the spec needs, the route table grouped by
// path prefix (Routes), strict size-limited JSON decoding, JSON and error
// rendering, CORS, and per-route metrics.
//
// Errors are rendered in exactly one place (WriteError): handlers return
// errors, the Handler adapter renders them.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"myelin/internal/apierr"
)

// DefaultMaxBody bounds request bodies that are not media uploads. The spec
// caps events at 65,536 bytes; account requests are far smaller.
const DefaultMaxBody = 65536 + 4096

// Handler is an HTTP handler that returns its error instead of writing it.
type Handler func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP renders a returned error through WriteError.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		WriteError(w, r, err)
	}
}

// NewRouter returns a router configured as Matrix paths require: no path
// cleaning (IDs may contain "//" or "..") and matching on the escaped path
// (IDs may contain "%2F"), with Matrix errors for unknown paths and methods.
func NewRouter() *mux.Router {
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	r.NotFoundHandler = Handler(func(w http.ResponseWriter, r *http.Request) error {
		return apierr.Unrecognized("Unrecognized request")
	})
	r.MethodNotAllowedHandler = Handler(func(w http.ResponseWriter, r *http.Request) error {
		return apierr.MethodNotAllowed()
	})
	return r
}

// Var returns the unescaped value of a route variable. Routers built by
// NewRouter match on the encoded path, so variables arrive escaped.
func Var(r *http.Request, name string) (string, error) {
	raw := mux.Vars(r)[name]
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", apierr.InvalidParam("Malformed path parameter " + name)
	}
	return v, nil
}

// DecodeJSON reads at most maxBytes of the body and decodes one JSON object
// into v. Unknown fields are allowed (the spec lets clients send more), but
// the body must be a single JSON object of the right shape.
func DecodeJSON(r *http.Request, maxBytes int64, v any) error {
	body, err := ReadBody(r, maxBytes)
	if err != nil {
		return err
	}
	return DecodeJSONBytes(body, v)
}

// ReadBody reads the whole body, refusing more than maxBytes with M_TOO_LARGE.
func ReadBody(r *http.Request, maxBytes int64) ([]byte, error) {
	if r.ContentLength > maxBytes {
		return nil, apierr.TooLarge("Request body too large")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBytes+1))
	if err != nil {
		return nil, apierr.BadJSON("Could not read request body")
	}
	if int64(len(body)) > maxBytes {
		return nil, apierr.TooLarge("Request body too large")
	}
	return body, nil
}

// DecodeJSONBytes decodes body (which must be a JSON object) into v, mapping
// syntax errors to M_NOT_JSON and shape errors to M_BAD_JSON.
func DecodeJSONBytes(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	// Go's decoder silently replaces invalid UTF-8 with U+FFFD; JSON must be
	// UTF-8, so such a body is not JSON.
	if len(trimmed) == 0 || !utf8.Valid(trimmed) || !json.Valid(trimmed) {
		return apierr.NotJSON("Content not JSON")
	}
	if trimmed[0] != '{' {
		return apierr.BadJSON("Request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return apierr.BadJSON("Wrong type for field " + typeErr.Field)
		}
		return apierr.BadJSON("Malformed request body")
	}
	return nil
}

// WriteJSON writes v as the JSON response body with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	}
	WriteEncoded(w, status, b)
}

// WriteEncoded writes body, already valid JSON, as the response. Handlers
// whose answers are mostly stored events (/sync, /messages) encode them
// with their own appenders and write them here: json.Marshal would
// re-validate every event it copies.
func WriteEncoded(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteError renders err as a Matrix standard error response. Anything that
// is not an *apierr.Error is an internal fault: it is logged (it carries
// server context, never user content) and the client sees a bare 500.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := apierr.As(err)
	if !ok {
		slog.ErrorContext(r.Context(), "request failed", "method", r.Method, "route", RouteName(r), "err", err)
		e = apierr.Internal()
	}
	body := make(map[string]any, 2+len(e.Extra))
	for k, v := range e.Extra {
		body[k] = v
	}
	body["errcode"] = e.Code
	body["error"] = e.Msg
	if e.RetryAfter > 0 {
		secs := int(math.Ceil(e.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		body["retry_after_ms"] = e.RetryAfter.Milliseconds()
	}
	WriteJSON(w, e.Status, body)
}

// RouteName is the path template of the matched route, or "unmatched"; it is
// the metrics label, so it must never be the raw path (unbounded, and raw
// paths carry user IDs).
func RouteName(r *http.Request) string {
	if route := mux.CurrentRoute(r); route != nil {
		if t, err := route.GetPathTemplate(); err == nil {
			return t
		}
	}
	return "unmatched"
}
