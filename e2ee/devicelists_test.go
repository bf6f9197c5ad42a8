package e2ee

import (
	"context"
	"crypto/ed25519"
	"slices"
	"testing"

	"myelin/roomserver"
)

// rooms starts a roomserver on the env's database.
func (e *env) rooms() *roomserver.Service {
	e.t.Helper()
	rs, err := roomserver.New(e.db, roomserver.Config{ServerName: server, KeyID: "ed25519:test",
		SigningKey: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := rs.Close(); err != nil {
			e.t.Errorf("close roomserver: %v", err)
		}
	})
	return rs
}

// viewpoint is where a viewer's last sync left off.
type viewpoint struct{ keys, events int64 }

func TestDeviceListChanges(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		rs := e.rooms()
		dl := e.svc.DeviceLists()
		alice, bob, carol := e.newDevice("alice", "A1"), e.newDevice("bob", "B1"), e.newDevice("carol", "C1")
		room, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice.userID, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		join := func(u *device) {
			if _, err := rs.Join(ctx, roomserver.MembershipRequest{RoomID: room, Sender: u.userID}); err != nil {
				t.Fatal(err)
			}
		}
		join(bob)

		now := func() viewpoint { return viewpoint{dl.StreamPosition(), rs.Notifier().Position()} }
		changes := func(viewer *device, from viewpoint) (changed, left []string) {
			t.Helper()
			to := now()
			changed, left, err := dl.Changes(ctx, viewer.userID, Window{Since: from.keys, UpTo: to.keys, EventsSince: from.events, EventsUpTo: to.events})
			if err != nil {
				t.Fatal(err)
			}
			return changed, left
		}
		expect := func(what string, viewer *device, from viewpoint, changed, left []string) {
			t.Helper()
			c, l := changes(viewer, from)
			if !slices.Equal(c, changed) || !slices.Equal(l, left) {
				t.Errorf("%s, seen by %s: changed %v left %v; want %v, %v", what, viewer.deviceID, c, l, changed, left)
			}
		}

		// Key uploads: seen by those sharing a room and by the uploader.
		start := now()
		e.takeWoken()
		e.upload(bob, 1, false)
		expect("bob's new keys", alice, start, []string{bob.userID}, nil)
		expect("bob's new keys", bob, start, []string{bob.userID}, nil)
		expect("bob's new keys", carol, start, nil, nil)
		if w := e.takeWoken(); !slices.Equal(w, []string{alice.userID, bob.userID}) {
			t.Fatalf("woken %v, want alice and bob", w)
		}
		if c, l, _ := dl.Changes(ctx, alice.userID, Window{Initial: true, UpTo: now().keys, EventsUpTo: now().events}); c != nil || l != nil {
			t.Fatalf("initial sync: %v %v", c, l)
		}

		// Carol joins: she and the members are new to each other.
		start = now()
		join(carol)
		expect("carol joins", alice, start, []string{carol.userID}, nil)
		expect("carol joins", carol, start, []string{alice.userID, bob.userID}, nil)

		// Carol's keys change while she is in the room.
		start = now()
		e.upload(carol, 0, true)
		expect("carol's keys", alice, start, []string{carol.userID}, nil)

		// Bob leaves: he shares nothing with alice or carol any more.
		start = now()
		if _, err := rs.Leave(ctx, roomserver.MembershipRequest{RoomID: room, Sender: bob.userID}); err != nil {
			t.Fatal(err)
		}
		expect("bob leaves", alice, start, nil, []string{bob.userID})
		expect("bob leaves", bob, start, nil, []string{alice.userID, carol.userID})

		// A left user's key changes are nobody's business.
		start = now()
		e.newDevice("bob", "B2")
		e.upload(&device{userID: bob.userID, deviceID: "B2", priv: bob.priv, curve: randomKey()}, 0, false)
		expect("bob's new device after leaving", alice, start, nil, nil)

		// Device deletion: recorded in the deletion's transaction, published
		// and announced by the hook.
		start = now()
		e.takeWoken()
		if err := e.accounts.DeleteDevices(ctx, "carol", []string{"C1"}, ""); err != nil {
			t.Fatal(err)
		}
		e.svc.DevicesRemoved("carol")
		expect("carol's device deleted", alice, start, []string{carol.userID}, nil)
		if w := e.takeWoken(); !slices.Equal(w, []string{alice.userID, carol.userID}) {
			t.Fatalf("woken after deletion %v", w)
		}
		if res, _ := e.svc.Query(ctx, alice.userID, map[string][]string{carol.userID: {}}); len(res.DeviceKeys[carol.userID]) != 0 {
			t.Fatalf("deleted device still listed: %v", res.DeviceKeys)
		}
		// A restarted service continues from the committed positions.
		again, err := New(Options{DB: e.db, ServerName: server})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := again.DeviceLists().StreamPosition(), dl.StreamPosition(); got != want {
			t.Fatalf("position after restart %d, want %d", got, want)
		}
	})
}
