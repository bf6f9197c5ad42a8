package roomserver

import (
	"testing"
)

func TestRelationOf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		typ      string
		state    bool
		content  string
		want     string // "rel_type target key", "" for none
		wantNone bool
	}{
		{"thread", "m.room.message", false, `{"m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}`, "m.thread $root ", false},
		{"reference", "m.room.message", false, `{"m.relates_to":{"rel_type":"m.reference","event_id":"$p"}}`, "m.reference $p ", false},
		{"annotation", "m.reaction", false, `{"m.relates_to":{"rel_type":"m.annotation","event_id":"$p","key":"👍"}}`, "m.annotation $p 👍", false},
		{"annotation without key", "m.reaction", false, `{"m.relates_to":{"rel_type":"m.annotation","event_id":"$p"}}`, "", true},
		{"edit", "m.room.message", false, `{"m.new_content":{"body":"x"},"m.relates_to":{"rel_type":"m.replace","event_id":"$p"}}`, "m.replace $p ", false},
		{"edit without m.new_content", "m.room.message", false, `{"m.relates_to":{"rel_type":"m.replace","event_id":"$p"}}`, "", true},
		{"encrypted edit", "m.room.encrypted", false, `{"ciphertext":"x","m.relates_to":{"rel_type":"m.replace","event_id":"$p"}}`, "m.replace $p ", false},
		{"state edit", "m.room.topic", true, `{"m.new_content":{},"m.relates_to":{"rel_type":"m.replace","event_id":"$p"}}`, "", true},
		{"rich reply is no relationship", "m.room.message", false, `{"m.relates_to":{"m.in_reply_to":{"event_id":"$p"}}}`, "", true},
		{"event_id not an event ID", "m.room.message", false, `{"m.relates_to":{"rel_type":"m.thread","event_id":"root"}}`, "", true},
		{"rel_type not a string", "m.room.message", false, `{"m.relates_to":{"rel_type":1,"event_id":"$p"}}`, "", true},
		{"m.relates_to not an object", "m.room.message", false, `{"m.relates_to":"x"}`, "", true},
		{"custom rel_type", "m.room.message", false, `{"m.relates_to":{"rel_type":"org.example.x","event_id":"$p"}}`, "org.example.x $p ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sk *string
			if tc.state {
				sk = sp("")
			}
			r := relationOf(tc.typ, sk, []byte(tc.content))
			if tc.wantNone {
				if r != nil {
					t.Fatalf("got %+v, want none", r)
				}
				return
			}
			if r == nil || r.RelType+" "+r.TargetID+" "+r.Key != tc.want {
				t.Fatalf("got %+v, want %q", r, tc.want)
			}
		})
	}
}

// mustGet reads one event as viewer.
func mustGet(t *testing.T, s *Service, room, id, viewer string) *Event {
	t.Helper()
	ev, err := s.GetEvent(ctxT(t), room, id, viewer)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// bundled renders one event for a viewer and returns its m.relations.
func bundled(t *testing.T, s *Service, room, id string, viewer Viewer) *Relations {
	t.Helper()
	out, err := s.ClientEvents(ctxT(t), []*Event{mustGet(t, s, room, id, viewer.UserID)}, viewer)
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Unsigned.Relations
}

func TestRelationsBundledAggregations(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
		if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		send := func(sender string, content map[string]any) string {
			return mustSend(t, s, SendRequest{RoomID: room, Sender: sender, Type: "m.room.message", Content: raw(content)})
		}
		rel := func(typ, target string) map[string]any { return map[string]any{"rel_type": typ, "event_id": target} }
		root := send(alice, map[string]any{"body": "root"})
		r1 := send(bob, map[string]any{"body": "r1", "m.relates_to": rel(RelThread, root)})
		r2 := send(alice, map[string]any{"body": "r2", "m.relates_to": rel(RelThread, root)})
		edit := func(sender, target, body string) string {
			return send(sender, map[string]any{"body": "* " + body, "m.new_content": map[string]any{"body": body}, "m.relates_to": rel(RelReplace, target)})
		}
		e1 := edit(alice, root, "root v2")
		e2 := edit(alice, root, "root v3")
		edit(bob, root, "not bob's to edit")
		r2edit := edit(alice, r2, "r2 v2")
		ref := send(bob, map[string]any{"body": "see above", "m.relates_to": rel(RelReference, root)})

		// Nested threads are refused; the event is not stored.
		_, err := s.Send(ctx, SendRequest{RoomID: room, Sender: bob, Type: "m.room.message",
			Content: raw(map[string]any{"body": "x", "m.relates_to": rel(RelThread, r1)})})
		wantCode(t, err, "M_UNKNOWN", 400)

		// The latest valid edit is alice's second unless both share a
		// millisecond: then the larger event ID wins (the spec's tie-break).
		latest := e2
		if a, b := mustGet(t, s, room, e1, alice), mustGet(t, s, room, e2, alice); a.OriginServerTS == b.OriginServerTS && e1 > e2 {
			latest = e1
		}
		got := bundled(t, s, room, root, Viewer{UserID: alice})
		if got == nil || got.Replace == nil || got.Replace.EventID != latest {
			t.Fatalf("m.replace: %+v, want the latest valid edit %s", got, latest)
		}
		th := got.Thread
		if th == nil || th.Count != 2 || !th.CurrentUserParticipated || th.LatestEvent == nil || th.LatestEvent.EventID != r2 {
			t.Fatalf("m.thread: %+v", th)
		}
		if lr := th.LatestEvent.Unsigned.Relations; lr == nil || lr.Replace == nil || lr.Replace.EventID != r2edit {
			t.Fatalf("latest_event's own edit not bundled: %+v", lr)
		}
		if got.Reference == nil || len(got.Reference.Chunk) != 1 || got.Reference.Chunk[0].EventID != ref {
			t.Fatalf("m.reference: %+v", got.Reference)
		}
		// A third user neither started nor replied; ignoring alice removes
		// her reply from the count and the latest event.
		carol := user("carol")
		if _, err := s.Join(ctx, MembershipRequest{RoomID: room, Sender: carol}); err != nil {
			t.Fatal(err)
		}
		got = bundled(t, s, room, root, Viewer{UserID: carol, Ignored: map[string]bool{alice: true}})
		if th := got.Thread; th == nil || th.Count != 1 || th.CurrentUserParticipated || th.LatestEvent.EventID != r1 {
			t.Fatalf("m.thread for carol ignoring alice: %+v", th)
		}

		// Redacting the latest edit reverts to the previous one; redacting
		// the root drops m.replace but keeps the thread.
		if _, err := s.Redact(ctx, RedactRequest{RoomID: room, Sender: alice, EventID: e2}); err != nil {
			t.Fatal(err)
		}
		if got = bundled(t, s, room, root, Viewer{UserID: alice}); got.Replace == nil || got.Replace.EventID != e1 {
			t.Fatalf("after redacting the latest edit: %+v", got.Replace)
		}
		if _, err := s.Redact(ctx, RedactRequest{RoomID: room, Sender: alice, EventID: root}); err != nil {
			t.Fatal(err)
		}
		got = bundled(t, s, room, root, Viewer{UserID: alice})
		if got == nil || got.Replace != nil || got.Thread == nil || got.Thread.Count != 2 {
			t.Fatalf("after redacting the root: %+v", got)
		}
	})
}

func TestRelationsDuplicateAnnotation(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *Service) {
		ctx := ctxT(t)
		alice := user("alice")
		room := mustCreate(t, s, CreateRoomRequest{Creator: alice})
		root := mustSend(t, s, message(room, alice, "root"))
		react := func(key string) SendRequest {
			return SendRequest{RoomID: room, Sender: alice, Type: "m.reaction",
				Content: raw(map[string]any{"m.relates_to": map[string]any{"rel_type": RelAnnotation, "event_id": root, "key": key}})}
		}
		first := mustSend(t, s, react("👍"))
		_, err := s.Send(ctx, react("👍"))
		wantCode(t, err, "M_DUPLICATE_ANNOTATION", 400)
		mustSend(t, s, react("🎉")) // another key is another annotation
		if _, err := s.Redact(ctx, RedactRequest{RoomID: room, Sender: alice, EventID: first}); err != nil {
			t.Fatal(err)
		}
		mustSend(t, s, react("👍")) // allowed again once the first is redacted
	})
}
