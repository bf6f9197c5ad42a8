package testserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// httpClient is shared by raw requests; keep-alives make the suite faster.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// Response is one raw HTTP answer, its body decoded when it is a JSON object.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any // nil unless the body is a JSON object
}

// Errcode is the Matrix errcode of an error response, or "".
func (r *Response) Errcode() string {
	c, _ := r.JSON["errcode"].(string)
	return c
}

// String returns the JSON value at key, or "".
func (r *Response) String(key string) string {
	v, _ := r.JSON[key].(string)
	return v
}

// Do sends one raw request: method, path (with any query), an access token
// ("" sends no Authorization header) and a raw body (nil sends none).
func (s *Server) Do(t testing.TB, method, path, token string, body []byte) *Response {
	t.Helper()
	return s.DoHeaders(t, method, path, token, body, nil)
}

// DoJSON is Do with v marshalled as the body.
func (s *Server) DoJSON(t testing.TB, method, path, token string, v any) *Response {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal request: %v", err)
	}
	return s.DoHeaders(t, method, path, token, b, nil)
}

// DoHeaders is Do with extra request headers.
func (s *Server) DoHeaders(t testing.TB, method, path, token string, body []byte, hdr http.Header) *Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL(path), rd)
	if err != nil {
		t.Fatalf("build request %s %s: %v", method, path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	var obj map[string]any
	if json.Unmarshal(b, &obj) == nil {
		r.JSON = obj
	}
	return r
}

// Client returns a mautrix client for this server, as Element would use it.
// userID and token may be empty for unauthenticated calls.
func (s *Server) Client(t testing.TB, userID id.UserID, token string) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(s.BaseURL, userID, token)
	if err != nil {
		t.Fatalf("mautrix client: %v", err)
	}
	c.Client = httpClient
	return c
}
