package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"myelin/internal/apierr"
)

type loginish struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Refresh  bool   `json:"refresh_token"`
}

func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		max      int64
		wantCode string
		wantHTTP int
	}{
		{"valid", `{"user":"a","password":"b"}`, 100, "", 0},
		{"unknown fields allowed", `{"user":"a","extra":[1,2]}`, 100, "", 0},
		{"empty", ``, 100, "M_NOT_JSON", 400},
		{"not json", `user=a`, 100, "M_NOT_JSON", 400},
		{"truncated", `{"user":`, 100, "M_NOT_JSON", 400},
		{"invalid utf-8", "{\"user\":\"\xff\xfe\"}", 100, "M_NOT_JSON", 400},
		{"trailing garbage", `{"user":"a"} x`, 100, "M_NOT_JSON", 400},
		{"array", `["a"]`, 100, "M_BAD_JSON", 400},
		{"string", `"a"`, 100, "M_BAD_JSON", 400},
		{"null", `null`, 100, "M_BAD_JSON", 400},
		{"wrong type string", `{"user":5}`, 100, "M_BAD_JSON", 400},
		{"wrong type bool", `{"refresh_token":"yes"}`, 100, "M_BAD_JSON", 400},
		{"too large", `{"user":"` + strings.Repeat("a", 200) + `"}`, 100, "M_TOO_LARGE", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			var v loginish
			err := DecodeJSON(r, tc.max, &v)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			e, ok := apierr.As(err)
			if !ok || e.Code != tc.wantCode || e.Status != tc.wantHTTP {
				t.Fatalf("got %v, want %s/%d", err, tc.wantCode, tc.wantHTTP)
			}
		})
	}
}

func TestRouterErrorsAndCORS(t *testing.T) {
	r := NewRouter()
	r.Handle("/_matrix/client/v3/thing/{id}", Handler(func(w http.ResponseWriter, r *http.Request) error {
		id, err := Var(r, "id")
		if err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, map[string]string{"id": id})
		return nil
	})).Methods(http.MethodGet)
	h := CORS(r)

	cases := []struct {
		name, method, path string
		wantStatus         int
		wantCode, wantID   string
	}{
		{"match with escaped id", "GET", "/_matrix/client/v3/thing/%21room%3Aexample.org", 200, "", "!room:example.org"},
		{"slash inside id is not a separator", "GET", "/_matrix/client/v3/thing/a%2Fb", 200, "", "a/b"},
		{"unknown path", "GET", "/_matrix/client/v3/nope", 404, "M_UNRECOGNIZED", ""},
		{"wrong method", "POST", "/_matrix/client/v3/thing/x", 405, "M_UNRECOGNIZED", ""},
		{"options preflight runs no logic", "OPTIONS", "/_matrix/client/v3/thing/x", 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.wantStatus, w.Body)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin = %q", got)
			}
			if !strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Errorf("Access-Control-Allow-Headers = %q", w.Header().Get("Access-Control-Allow-Headers"))
			}
			var body map[string]any
			if w.Body.Len() > 0 {
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatalf("body not JSON: %s", w.Body)
				}
			}
			if tc.method == "OPTIONS" && w.Body.Len() != 0 {
				t.Errorf("OPTIONS ran handler logic: %s", w.Body)
			}
			if tc.wantCode != "" && body["errcode"] != tc.wantCode {
				t.Errorf("errcode %v, want %s", body["errcode"], tc.wantCode)
			}
			if tc.wantID != "" && body["id"] != tc.wantID {
				t.Errorf("id %v, want %s", body["id"], tc.wantID)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
		wantRetry  string
		wantExtra  string
	}{
		{"matrix error", apierr.Forbidden("no"), 403, "M_FORBIDDEN", "", ""},
		{"wrapped matrix error", wrap(apierr.UserInUse()), 400, "M_USER_IN_USE", "", ""},
		{"rate limited rounds up", apierr.LimitExceeded(1500 * time.Millisecond), 429, "M_LIMIT_EXCEEDED", "2", ""},
		{"soft logout field", apierr.UnknownToken(true), 401, "M_UNKNOWN_TOKEN", "", "soft_logout"},
		{"internal error hides cause", errSecret, 500, "M_UNKNOWN", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteError(w, httptest.NewRequest("GET", "/", nil), tc.err)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", w.Code, tc.wantStatus)
			}
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body["errcode"] != tc.wantCode {
				t.Errorf("errcode %v", body["errcode"])
			}
			if got := w.Header().Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tc.wantRetry)
			}
			if tc.wantExtra != "" {
				if _, ok := body[tc.wantExtra]; !ok {
					t.Errorf("missing %s in %s", tc.wantExtra, w.Body)
				}
			}
			if strings.Contains(w.Body.String(), "hunter2") {
				t.Errorf("internal cause leaked: %s", w.Body)
			}
		})
	}
}

type secretErr struct{}

func (secretErr) Error() string { return "db said password hunter2" }

var errSecret error = secretErr{}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "context: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func TestMetricsLabelRouteTemplates(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r := NewRouter()
	r.Handle("/_matrix/client/v3/profile/{userId}", Handler(func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, 200, map[string]string{})
		return nil
	})).Methods("GET")
	m.Instrument(r)
	for _, p := range []string{"/_matrix/client/v3/profile/%40a%3Ax", "/_matrix/client/v3/profile/%40b%3Ax", "/nope"} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("/_matrix/client/v3/profile/{userId}", "GET", "200")); got != 2 {
		t.Errorf("templated route count = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("unmatched", "GET", "404")); got != 1 {
		t.Errorf("unmatched count = %v, want 1", got)
	}
}
