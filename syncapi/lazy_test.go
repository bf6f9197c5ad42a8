package syncapi

import (
	"slices"
	"testing"
)

// TestLazyLoadingMembers: with lazy_load_members the state carries the
// member events of the timeline's senders (plus the user's own when the
// room is new to the client, and the heroes of an unnamed room) and no
// others; redundant members are skipped unless include_redundant_members.
func TestLazyLoadingMembers(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob, carol, dave, erin := user("alice"), user("bob"), user("carol"), user("dave"), user("erin")
		const lazy = `{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}`
		const lazyRedundant = `{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true,"include_redundant_members":true}}}`
		const eager = `{"room":{"timeline":{"limit":2}}}`

		type step struct {
			name    string
			act     func(room string) // events before this sync
			filter  string
			initial bool // sync without since (else since = previous step's next_batch)
			want    []string
		}
		cases := []struct {
			name  string
			named bool
			steps []step
		}{
			{"named room", true, []step{
				{"initial: senders and self", func(r string) { e.send(r, carol, "c1"); e.send(r, dave, "d1") }, lazy, true,
					[]string{bob, carol, dave}},
				{"initial, one sender", func(r string) { e.send(r, alice, "a1") }, lazy, true,
					[]string{alice, bob, dave}},
				{"incremental, known sender is redundant", func(r string) { e.send(r, alice, "a2") }, lazy, false,
					[]string{}},
				{"incremental, redundant included on request", func(r string) { e.send(r, alice, "a3") }, lazyRedundant, false,
					[]string{alice}},
				{"incremental, new sender", func(r string) { e.send(r, carol, "c2") }, lazy, false,
					[]string{carol}},
				{"member event in the timeline is not repeated", func(r string) { e.join(r, erin); e.send(r, erin, "e1") }, lazy, false,
					[]string{}},
				{"without lazy loading every member", func(r string) { e.send(r, dave, "d2") }, eager, true,
					[]string{alice, bob, carol, dave, erin}},
			}},
			{"unnamed room adds heroes", false, []step{
				// Senders dave and alice, heroes alice, carol and dave.
				{"initial", func(r string) { e.send(r, dave, "d1"); e.send(r, alice, "a1") }, lazy, true,
					[]string{alice, bob, carol, dave}},
			}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				name := ""
				if c.named {
					name = "Team"
				}
				room := e.room(alice, name, bob, carol, dave)
				since := ""
				for _, s := range c.steps {
					s.act(room)
					req := Request{UserID: bob, Filter: s.filter}
					if !s.initial {
						req.Since = since
					}
					r := e.do(req)
					since = r.NextBatch
					j, ok := r.Rooms.Join[room]
					if !ok {
						t.Fatalf("%s: room missing", s.name)
					}
					got := memberKeys(j.State.Events)
					want := slices.Clone(s.want)
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Errorf("%s: state members = %v, want %v (timeline %v)", s.name, got, want, types(j.Timeline.Events))
					}
				}
			})
		}
	})
}
