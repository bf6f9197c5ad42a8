package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gorilla/mux"
)

// groupSegments is how many leading path segments name a route group:
// "/_matrix/client/v3/rooms/{roomId}/send/…" is in "/_matrix/client/v3/rooms".
const groupSegments = 4

// Routes is a route table split by literal path prefix: one router (from
// NewRouter) per group, chosen by the request path's first segments before
// gorilla/mux matches anything.
//
// Why: gorilla/mux tries a request against every route in registration
// order, escaping the path and running a regular expression for each; with
// the client API's ~130 routes that walk was 5% of the send path's CPU.
// Within a group the walk is a few routes long.
//
// Why it answers exactly as one router would: a group's templates start
// with the same literal segments, so a path can match templates of one group
// only, and that group's router sees every route the path could match. Its
// 405 (a route's path matched, no route's method) and 404 are therefore the
// ones a single router over all routes would give. (A gorilla/mux subrouter
// per prefix would not: its prefix match clears an earlier method mismatch.)
// The group is picked from the decoded path; templates' leading segments are
// plain literals, so a path whose decoded prefix differs from its escaped
// one cannot match any of them either way.
type Routes struct {
	groups    map[string]*mux.Router
	unmatched *mux.Router // paths of no group: 404 M_UNRECOGNIZED
	configure func(*mux.Router)
}

// NewRoutes returns an empty table. configure, if not nil, runs on every
// router the table creates (e.g. Metrics.Instrument).
func NewRoutes(configure func(*mux.Router)) *Routes {
	t := &Routes{groups: map[string]*mux.Router{}, configure: configure}
	t.unmatched = t.newRouter()
	return t
}

func (t *Routes) newRouter() *mux.Router {
	r := NewRouter()
	if t.configure != nil {
		t.configure(r)
	}
	return r
}

// Handle serves method on the path template tpl with h. The template's
// group segments must be literal; anything else is a programming error.
func (t *Routes) Handle(method, tpl string, h http.Handler) {
	key := groupOf(tpl)
	if strings.ContainsAny(key, "{}") {
		panic(fmt.Sprintf("httpapi: route %q has a variable in its first %d segments", tpl, groupSegments))
	}
	r := t.groups[key]
	if r == nil {
		r = t.newRouter()
		t.groups[key] = r
	}
	r.Handle(tpl, h).Methods(method)
}

// ServeHTTP dispatches to the request path's group.
func (t *Routes) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := t.groups[groupOf(req.URL.Path)]
	if r == nil {
		r = t.unmatched
	}
	r.ServeHTTP(w, req)
}

// Walk calls fn for every route, group by group in key order.
func (t *Routes) Walk(fn mux.WalkFunc) error {
	keys := make([]string, 0, len(t.groups))
	for k := range t.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := t.groups[k].Walk(fn); err != nil {
			return err
		}
	}
	return nil
}

// groupOf returns the path up to (not including) the slash that ends its
// groupSegments-th segment, or the whole path if it has fewer. It does not
// allocate: the key is a substring of path.
func groupOf(path string) string {
	n := 0
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			n++
			if n == groupSegments {
				return path[:i]
			}
		}
	}
	return path
}
