package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRoutesAnswerAsOneRouter: the grouped table must give every request
// the answer one router holding all routes gives — the same handler, or the
// same 404 or 405 — including paths whose prefix is escaped, cut short or
// shared with another group.
func TestRoutesAnswerAsOneRouter(t *testing.T) {
	routes := []struct{ method, tpl string }{
		{http.MethodPut, "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"},
		{http.MethodGet, "/_matrix/client/v3/rooms/{roomId}/messages"},
		{http.MethodPost, "/_matrix/client/v3/rooms/{roomId}/join"},
		{http.MethodGet, "/_matrix/client/v3/sync"},
		{http.MethodGet, "/_matrix/client/v3/profile/{userId}"},
		{http.MethodPut, "/_matrix/client/v3/profile/{userId}/{keyName}"},
		{http.MethodGet, "/_matrix/client/versions"},
		{http.MethodGet, "/.well-known/matrix/client"},
		{http.MethodGet, "/_matrix/media/v3/download/{serverName}/{mediaId}"},
	}
	single := NewRouter()
	table := NewRoutes(nil)
	for i, rt := range routes {
		tag := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Route", rt.tpl)
			w.WriteHeader(200 + i)
		})
		single.Handle(rt.tpl, tag).Methods(rt.method)
		table.Handle(rt.method, rt.tpl, tag)
	}
	requests := []struct{ method, path string }{
		{http.MethodPut, "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/t1"},
		{http.MethodPost, "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/t1"}, // 405
		{http.MethodGet, "/_matrix/client/v3/rooms/%21r%3Ahs/messages"},
		{http.MethodPost, "/_matrix/client/v3/rooms/!r:hs/join"},
		{http.MethodGet, "/_matrix/client/v3/rooms/%21r%3Ahs/join"}, // 405
		{http.MethodGet, "/_matrix/client/v3/rooms/%21r%3Ahs/nothing"},
		{http.MethodGet, "/_matrix/client/v3/rooms"},
		{http.MethodGet, "/_matrix/client/v3/rooms/"},
		{http.MethodGet, "/_matrix/client/v3/r%6Foms/%21r%3Ahs/messages"}, // escaped literal
		{http.MethodGet, "/_matrix/client/v3/rooms%2F%21r%3Ahs/messages"}, // escaped slash in the group
		{http.MethodGet, "/_matrix/client/v3/sync"},
		{http.MethodPost, "/_matrix/client/v3/sync"}, // 405
		{http.MethodGet, "/_matrix/client/v3/sync/"},
		{http.MethodGet, "/_matrix/client/v3/profile/%40u%3Ahs"},
		{http.MethodPut, "/_matrix/client/v3/profile/%40u%3Ahs/displayname"},
		{http.MethodGet, "/_matrix/client/v3/profile/%40u%3Ahs/displayname"}, // 405
		{http.MethodGet, "/_matrix/client/v3/profile/%40u%2Fx%3Ahs"},
		{http.MethodGet, "/_matrix/client/versions"},
		{http.MethodGet, "/_matrix/client/versions/x"},
		{http.MethodGet, "/_matrix/client"},
		{http.MethodGet, "/.well-known/matrix/client"},
		{http.MethodGet, "/_matrix/media/v3/download/hs/abc"},
		{http.MethodGet, "/_matrix/media/v3/download/hs"},
		{http.MethodGet, "/"},
		{http.MethodGet, "/unknown/a/b/c/d/e"},
	}
	codes := map[int]int{}
	for _, rq := range requests {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		single.ServeHTTP(want, httptest.NewRequest(rq.method, rq.path, nil))
		table.ServeHTTP(got, httptest.NewRequest(rq.method, rq.path, nil))
		if got.Code != want.Code || got.Header().Get("X-Route") != want.Header().Get("X-Route") || got.Body.String() != want.Body.String() {
			t.Errorf("%s %s: table answered %d %q %s, one router %d %q %s", rq.method, rq.path,
				got.Code, got.Header().Get("X-Route"), got.Body, want.Code, want.Header().Get("X-Route"), want.Body)
		}
		codes[want.Code]++
	}
	// The table above must exercise every kind of answer.
	if codes[404] == 0 || codes[405] == 0 || len(codes) < 8 {
		t.Fatalf("requests exercise answers %v; want matches, 404s and 405s", codes)
	}
}

func TestRoutesRejectVariableGroup(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a template with a variable in its group segments was accepted")
		}
	}()
	NewRoutes(nil).Handle(http.MethodGet, "/_matrix/client/{version}/sync", http.NotFoundHandler())
}

// TestRoutesInstrumentEveryGroup: the configure hook (metrics) runs on every
// group's router and on the unmatched one.
func TestRoutesInstrumentEveryGroup(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	table := NewRoutes(m.Instrument)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	table.Handle(http.MethodGet, "/_matrix/client/v3/sync", ok)
	table.Handle(http.MethodGet, "/_matrix/client/v3/rooms/{roomId}/messages", ok)
	for _, p := range []string{"/_matrix/client/v3/sync", "/_matrix/client/v3/rooms/x/messages", "/nowhere"} {
		table.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	for _, tc := range []struct{ route, code string }{
		{"/_matrix/client/v3/sync", "200"},
		{"/_matrix/client/v3/rooms/{roomId}/messages", "200"},
		{"unmatched", "404"},
	} {
		if n := testutil.ToFloat64(m.requests.WithLabelValues(tc.route, http.MethodGet, tc.code)); n != 1 {
			t.Errorf("requests{route=%q} = %v, want 1", tc.route, n)
		}
	}
	var n int
	if err := table.Walk(func(*mux.Route, *mux.Router, []*mux.Route) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("Walk visited %d routes (%v), want 2", n, err)
	}
}

func TestGroupOf(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/_matrix/client/v3/rooms/x/send", "/_matrix/client/v3/rooms"},
		{"/_matrix/client/v3/rooms/", "/_matrix/client/v3/rooms"},
		{"/_matrix/client/v3/sync", "/_matrix/client/v3/sync"},
		{"/.well-known/matrix/client", "/.well-known/matrix/client"},
		{"/", "/"},
		{"", ""},
	} {
		if got := groupOf(tc.path); got != tc.want {
			t.Errorf("groupOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// BenchmarkRoutesSend: a send request dispatched through the client API's
// route table shape (a group of ~40 room routes, the send route first)
// against the same routes in one router behind ~20 others.
func BenchmarkRoutesSend(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	single, table := NewRouter(), NewRoutes(nil)
	add := func(method, tpl string) {
		single.Handle(tpl, ok).Methods(method)
		table.Handle(method, tpl, ok)
	}
	for _, p := range []string{"sync", "versions", "login", "register", "capabilities", "devices", "keys/upload",
		"keys/query", "keys/claim", "pushrules/", "account/whoami", "voip/turnServer", "publicRooms",
		"user_directory/search", "createRoom", "joined_rooms", "presence/list", "notifications", "logout", "refresh"} {
		add(http.MethodGet, "/_matrix/client/v3/"+p)
	}
	add(http.MethodPut, "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}")
	for _, p := range []string{"messages", "state", "members", "joined_members", "context/{eventId}", "read_markers"} {
		add(http.MethodGet, "/_matrix/client/v3/rooms/{roomId}/"+p)
	}
	req := httptest.NewRequest(http.MethodPut, "/_matrix/client/v3/rooms/%21room%3Ahs/send/m.room.message/t1", nil)
	w := httptest.NewRecorder()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"one_router", single}, {"grouped", table}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.h.ServeHTTP(w, req)
			}
		})
	}
}
