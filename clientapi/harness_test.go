package clientapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"myelin/account"
	"myelin/config"
	"myelin/internal/httpapi"
	"myelin/internal/pgtest"
	"myelin/storage"
	"myelin/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testConfig is a valid config for handler tests: cheap bcrypt, open
// registration, a shared secret, rate limits off.
func testConfig() *config.Config {
	cfg := config.Default()
	cfg.ServerName = "test.local"
	cfg.Registration.Enabled = true
	cfg.Registration.SharedSecret = "s3cret"
	cfg.Auth.PasswordHashCost = 4
	cfg.RateLimits.Enabled = false
	return &cfg
}

// server is one handler under test and what it was built from.
type server struct {
	t       *testing.T
	cfg     *config.Config
	db      *storage.DB
	svc     *account.Service
	h       http.Handler
	clock   *fakeClock
	metrics *prometheus.Registry
}

// fakeClock is a settable clock for expiry tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// eachEngine runs fn with a fresh server on SQLite and on PostgreSQL.
// mutate adjusts the config before the server is built.
func eachEngine(t *testing.T, mutate func(*config.Config), fn func(t *testing.T, s *server)) {
	t.Helper()
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			fn(t, newServer(t, storagetest.OpenMigrated(t, engine, 4), mutate))
		})
	}
}

func newServer(t *testing.T, db *storage.DB, mutate func(*config.Config)) *server {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Verify(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	svc, err := account.New(cfg, db, account.WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := New(Options{Config: cfg, Accounts: svc, Metrics: httpapi.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	return &server{t: t, cfg: cfg, db: db, svc: svc, h: h, clock: clock, metrics: reg}
}

// resp is a decoded response.
type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r resp) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

// do sends one request through the real handler. body may be a string (sent
// verbatim), []byte, nil, or anything else (JSON-encoded).
func (s *server) do(method, path, token string, body any) resp {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = "192.0.2.1:1234"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	out := resp{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &out.body); err != nil {
			s.t.Fatalf("%s %s: response is not a JSON object: %q", method, path, rec.Body.String())
		}
	}
	if ct := rec.Header().Get("Content-Type"); rec.Body.Len() > 0 && ct != "application/json" {
		s.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return out
}

// expect fails unless the response has the status and (if non-empty) errcode.
func (s *server) expect(r resp, status int, errcode string) {
	s.t.Helper()
	if r.status != status || (errcode != "" && r.str("errcode") != errcode) {
		s.t.Fatalf("got %d %s, want %d %s (body %s)", r.status, r.str("errcode"), status, errcode, r.raw)
	}
	if errcode == "" && r.status < 300 && r.body["errcode"] != nil {
		s.t.Fatalf("success with errcode: %s", r.raw)
	}
}

const v3 = "/_matrix/client/v3"

// register creates an account through the dummy flow and returns the
// session response.
func (s *server) register(username, password string) resp {
	s.t.Helper()
	r := s.do("POST", v3+"/register", "", map[string]any{"username": username, "password": password})
	s.expect(r, 401, "")
	r = s.do("POST", v3+"/register", "", map[string]any{
		"username": username, "password": password,
		"auth": map[string]any{"type": "m.login.dummy", "session": r.str("session")},
	})
	s.expect(r, 200, "")
	return r
}

func (s *server) login(user, password string, extra map[string]any) resp {
	s.t.Helper()
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": password}
	for k, v := range extra {
		body[k] = v
	}
	return s.do("POST", v3+"/login", "", body)
}

// passwordAuth is an m.login.password auth dict for a UIA request.
func passwordAuth(user, password, session string) map[string]any {
	return map[string]any{"type": "m.login.password", "session": session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}
