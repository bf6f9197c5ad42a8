package clientapi

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/gorilla/mux"

	"myelin/account"
	"myelin/config"
	"myelin/e2ee"
	"myelin/media"
	"myelin/notifications"
	"myelin/roomserver"
	"myelin/syncapi"
)

// TestRoutesDoNotOverlap: gorilla/mux serves the first registered route
// that matches, and New registers the hottest routes first for speed.
// That is only safe while no request matches two routes, so every route
// is tried with a path made from its own template (each variable filled
// with a sample) and must be the only one to match it.
func TestRoutesDoNotOverlap(t *testing.T) {
	cfg := config.Default()
	cfgp := &cfg
	// Registration reads no service state; empty services register every
	// group's routes.
	r, err := newRouter(Options{Config: cfgp, Accounts: &account.Service{}, Rooms: &roomserver.Service{}, Sync: &syncapi.Service{},
		Keys: &e2ee.Service{}, Push: &notifications.Service{}, Media: &media.Service{}})
	if err != nil {
		t.Fatal(err)
	}
	type route struct {
		route  *mux.Route
		method string
		tmpl   string
	}
	var routes []route
	if err := r.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := rt.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := rt.GetMethods()
		if err != nil {
			return err
		}
		for _, m := range methods {
			routes = append(routes, route{rt, m, tmpl})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(routes) < 100 {
		t.Fatalf("only %d routes registered; the services did not register theirs", len(routes))
	}
	vars := regexp.MustCompile(`\{[^}]*\}`)
	for _, sample := range []string{"x", "%21r%3Ahs"} {
		for _, want := range routes {
			path := vars.ReplaceAllString(want.tmpl, sample)
			req := httptest.NewRequest(want.method, path, nil)
			var matched []string
			for _, other := range routes {
				var m mux.RouteMatch
				if other.method == want.method && other.route.Match(req, &m) && m.MatchErr == nil {
					matched = append(matched, other.tmpl)
				}
			}
			if len(matched) != 1 || matched[0] != want.tmpl {
				t.Errorf("%s %s matches %v, want only %s", want.method, path, matched, want.tmpl)
			}
		}
	}
}

// BenchmarkSendRouting: a send request through the client API's real route
// table, to the send handler's first answer (401: no access token), so the
// figure is routing plus one small error body.
func BenchmarkSendRouting(b *testing.B) {
	cfg := config.Default()
	r, err := newRouter(Options{Config: &cfg, Accounts: &account.Service{}, Rooms: &roomserver.Service{}, Sync: &syncapi.Service{},
		Keys: &e2ee.Service{}, Push: &notifications.Service{}, Media: &media.Service{}})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPut, "/_matrix/client/v3/rooms/%21room%3Ahs/send/m.room.message/t1", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			b.Fatalf("send without a token answered %d", w.Code)
		}
	}
}
