package clientapi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/storage/sqlite"
)

// fuzzService is an account service for the database-free validation path
// (CheckRegisterRequest / CheckLoginRequest never touch the database).
func fuzzService(f *testing.F) *account.Service {
	f.Helper()
	dir, err := os.MkdirTemp("", "clientapi-fuzz-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	db, err := sqlite.Open(filepath.Join(dir, "fuzz.db"), 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		f.Fatal(err)
	}
	svc, err := account.New(testConfig(), db)
	if err != nil {
		f.Fatal(err)
	}
	return svc
}

// checkClientError fails unless err is a Matrix error with a 4xx status:
// bad input must never be a panic or a 500.
func checkClientError(t *testing.T, err error) {
	t.Helper()
	e, ok := apierr.As(err)
	if !ok {
		t.Fatalf("non-Matrix error %T: %v", err, err)
	}
	if e.Status < 400 || e.Status >= 500 || e.Code == "" || !strings.HasPrefix(e.Code, "M_") {
		t.Fatalf("bad error for client input: %d %s", e.Status, e.Code)
	}
}

// checkLocalpart fails unless local is a valid new localpart.
func checkLocalpart(t *testing.T, local string) {
	t.Helper()
	if local == "" || len("@"+local+":test.local") > 255 {
		t.Fatalf("localpart %q has a bad length", local)
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("._=-/+", c) >= 0) {
			t.Fatalf("localpart %q has byte %q", local, c)
		}
	}
}

func FuzzRegisterRequest(f *testing.F) {
	svc := fuzzService(f)
	for _, seed := range []struct{ kind, body string }{
		{"", `{"username": "alice", "password": "correct horse", "auth": {"type": "m.login.dummy", "session": "abc"}}`},
		{"user", `{"username": "Bob.Smith", "password": "pw", "device_id": "DEV", "initial_device_display_name": "Phone", "inhibit_login": true, "refresh_token": true}`},
		{"", `{"auth": {"type": "m.login.registration_token", "token": "fBVFdqVE", "session": "x"}}`},
		{"guest", `{}`},
		{"", `{"username": "caf\u00e9"}`},
		{"", `{"username": 5}`},
		{"", `[]`},
		{"", `not json`},
		{"", ``},
		{"", `{"username": "` + strings.Repeat("a", 300) + `"}`},
		{"", `{"device_id": "\u0000"}`},
	} {
		f.Add(seed.kind, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, kind string, body []byte) {
		req, err := decodeRegisterRequest(kind, body, "192.0.2.1")
		if err != nil {
			checkClientError(t, err)
			return
		}
		if kind != "" && kind != "user" {
			t.Fatalf("kind %q accepted", kind)
		}
		local, err := svc.CheckRegisterRequest(req)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if req.Username == "" {
			if local != "" {
				t.Fatalf("localpart %q from no username", local)
			}
			return
		}
		checkLocalpart(t, local)
		if !strings.EqualFold(local, req.Username) {
			t.Fatalf("username %q mapped to unrelated localpart %q", req.Username, local)
		}
	})
}

func FuzzLoginRequest(f *testing.F) {
	svc := fuzzService(f)
	for _, seed := range []string{
		`{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw"}`,
		`{"type": "m.login.password", "user": "@alice:test.local", "password": "pw", "device_id": "D", "refresh_token": true}`,
		`{"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b"}}`,
		`{"type": "m.login.password", "identifier": {"type": "m.id.phone", "country": "DE", "phone": "123"}}`,
		`{"type": "m.login.token", "token": "x"}`,
		`{"type": "m.login.password", "user": "@alice:other.example"}`,
		`{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "ALICE"}, "initial_device_display_name": "x"}`,
		`{"type": 1}`,
		`{}`,
		`[`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeLoginRequest(body, "192.0.2.1")
		if err != nil {
			checkClientError(t, err)
			return
		}
		local, err := svc.CheckLoginRequest(req)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if req.Type != account.LoginTypePassword {
			t.Fatalf("login type %q accepted", req.Type)
		}
		checkLocalpart(t, local)
	})
}
