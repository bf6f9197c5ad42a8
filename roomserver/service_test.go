package roomserver

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCreateSendRead(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Name: sp("Front desk"), Topic: sp("Appointments")})
		if !strings.HasPrefix(room, "!") || strings.Contains(room, ":") {
			t.Fatalf("v12 room ID %q should be domainless", room)
		}
		before := s.Notifier().Position()
		id := mustSend(t, s, message(room, alice, "hello"))
		if s.Notifier().Position() <= before {
			t.Fatal("notifier did not advance after commit")
		}
		ev, err := s.GetEvent(ctx, room, id, alice)
		if err != nil {
			t.Fatal(err)
		}
		var c struct{ Body string }
		if err := json.Unmarshal(ev.Content, &c); err != nil || c.Body != "hello" {
			t.Fatalf("content %s", ev.Content)
		}
		if got := stateContent(t, s, room, "m.room.name", "")["name"]; got != "Front desk" {
			t.Fatalf("name %v", got)
		}
		joined, err := s.JoinedRooms(ctx, alice)
		if err != nil || len(joined) != 1 || joined[0] != room {
			t.Fatalf("joined rooms %v %v", joined, err)
		}
	})
}
