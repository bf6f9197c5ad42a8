package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// rawEvent is a client event as served, with the bundled aggregations
// decoded (mautrix's event.Relations predates the current format).
type rawEvent struct {
	EventID  string         `json:"event_id"`
	Type     string         `json:"type"`
	Sender   string         `json:"sender"`
	Content  map[string]any `json:"content"`
	Unsigned struct {
		Relations *struct {
			Replace *rawEvent `json:"m.replace"`
			Thread  *struct {
				LatestEvent             *rawEvent `json:"latest_event"`
				Count                   int       `json:"count"`
				CurrentUserParticipated bool      `json:"current_user_participated"`
			} `json:"m.thread"`
			Reference *struct {
				Chunk []struct {
					EventID string `json:"event_id"`
				} `json:"chunk"`
			} `json:"m.reference"`
		} `json:"m.relations"`
		RedactedBecause json.RawMessage `json:"redacted_because"`
	} `json:"unsigned"`
}

func getJSON(t *testing.T, c *mautrix.Client, path mautrix.ClientURLPath, query map[string]string, out any) {
	t.Helper()
	if _, err := c.MakeRequest(context.Background(), "GET", c.BuildURLWithQuery(path, query), nil, out); err != nil {
		t.Fatalf("GET %v: %v", path, err)
	}
}

func findEvent(evs []rawEvent, eventID id.EventID) *rawEvent {
	for i := range evs {
		if evs[i].EventID == string(eventID) {
			return &evs[i]
		}
	}
	return nil
}

func eventIDs(evs []rawEvent) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// TestRelationsEditsThreadsReactions drives relationships the way Element
// does: a threaded image reply edited to another image, reactions, two
// threads competing for the top of /threads, and a redacted thread root.
func TestRelationsEditsThreadsReactions(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		carol := newRoomUser(t, srv, "carol")
		created, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Radiology"})
		if err != nil {
			t.Fatal(err)
		}
		room := created.RoomID
		for _, u := range []roomUser{bob, carol} {
			if _, err := u.c.JoinRoomByID(ctx, room); err != nil {
				t.Fatal(err)
			}
		}
		send := func(u roomUser, typ event.Type, content map[string]any) id.EventID {
			t.Helper()
			resp, err := u.c.SendMessageEvent(ctx, room, typ, content)
			if err != nil {
				t.Fatalf("send %s: %v", typ, err)
			}
			return resp.EventID
		}
		inThread := func(root id.EventID) map[string]any {
			return map[string]any{"rel_type": "m.thread", "event_id": root, "is_falling_back": true,
				"m.in_reply_to": map[string]any{"event_id": root}}
		}

		root := sendText(t, alice, room, "Max's x-ray is in")
		image := send(bob, event.EventMessage, map[string]any{"msgtype": "m.image", "body": "xray-1.png",
			"url": "mxc://clinic.test/xray1", "info": map[string]any{"mimetype": "image/png"}, "m.relates_to": inThread(root)})
		// The edit swaps the image; its m.relates_to is the replacement only:
		// the original's thread relation stays (event replacements,
		// "Applying m.new_content").
		edit := send(bob, event.EventMessage, map[string]any{"msgtype": "m.image", "body": "* xray-2.png",
			"url": "mxc://clinic.test/xray2",
			"m.new_content": map[string]any{"msgtype": "m.image", "body": "xray-2.png", "url": "mxc://clinic.test/xray2",
				"info": map[string]any{"mimetype": "image/png"}},
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": image}})
		// Carol may not edit bob's image: ignored in the aggregation.
		send(carol, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "* hijack",
			"m.new_content": map[string]any{"msgtype": "m.text", "body": "hijack"},
			"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": image}})

		checkImage := func(t *testing.T, ev *rawEvent, where string) {
			t.Helper()
			if ev == nil {
				t.Fatalf("%s: the image reply is missing", where)
			}
			rel, _ := ev.Content["m.relates_to"].(map[string]any)
			if rel["rel_type"] != "m.thread" || rel["event_id"] != string(root) {
				t.Fatalf("%s: the image left its thread: %v", where, ev.Content["m.relates_to"])
			}
			if ev.Unsigned.Relations == nil || ev.Unsigned.Relations.Replace == nil || ev.Unsigned.Relations.Replace.EventID != string(edit) {
				t.Fatalf("%s: the bundled edit is not %s: %+v", where, edit, ev.Unsigned.Relations)
			}
			nc, _ := ev.Unsigned.Relations.Replace.Content["m.new_content"].(map[string]any)
			if nc["url"] != "mxc://clinic.test/xray2" || nc["msgtype"] != "m.image" {
				t.Fatalf("%s: the bundled edit's new content: %v", where, nc)
			}
			if ev.Content["url"] != "mxc://clinic.test/xray1" {
				t.Fatalf("%s: the original's content must stay intact, got url %v", where, ev.Content["url"])
			}
		}

		step(t, "an edited image keeps its thread in /sync, /messages and /relations", func(t *testing.T) {
			var syncResp struct {
				Rooms struct {
					Join map[string]struct {
						Timeline struct {
							Events []rawEvent `json:"events"`
						} `json:"timeline"`
					} `json:"join"`
				} `json:"rooms"`
			}
			getJSON(t, alice.c, mautrix.ClientURLPath{"v3", "sync"},
				map[string]string{"filter": `{"room":{"timeline":{"limit":50}}}`}, &syncResp)
			timeline := syncResp.Rooms.Join[string(room)].Timeline.Events
			checkImage(t, findEvent(timeline, image), "/sync")
			if r := findEvent(timeline, root); r == nil || r.Unsigned.Relations == nil || r.Unsigned.Relations.Thread == nil ||
				r.Unsigned.Relations.Thread.Count != 1 || r.Unsigned.Relations.Thread.LatestEvent.EventID != string(image) {
				t.Fatalf("/sync: the root's thread summary: %+v", r)
			}

			var msgs struct {
				Chunk []rawEvent `json:"chunk"`
			}
			getJSON(t, alice.c, mautrix.ClientURLPath{"v3", "rooms", room, "messages"}, map[string]string{"dir": "b", "limit": "50"}, &msgs)
			checkImage(t, findEvent(msgs.Chunk, image), "/messages")
			r := findEvent(msgs.Chunk, root)
			if r == nil || r.Unsigned.Relations == nil || r.Unsigned.Relations.Thread == nil {
				t.Fatalf("/messages: the root has no thread summary")
			}
			// The thread's latest event carries its own edit.
			checkImage(t, r.Unsigned.Relations.Thread.LatestEvent, "/messages latest_event")

			rels, err := alice.c.GetRelations(ctx, room, root, &mautrix.ReqGetRelations{RelationType: event.RelThread})
			if err != nil {
				t.Fatal(err)
			}
			if len(rels.Chunk) != 1 || rels.Chunk[0].ID != image {
				t.Fatalf("/relations m.thread: %d events", len(rels.Chunk))
			}
			var single rawEvent
			getJSON(t, alice.c, mautrix.ClientURLPath{"v3", "rooms", room, "event", image}, nil, &single)
			checkImage(t, &single, "/event")
		})

		step(t, "reactions show in /relations", func(t *testing.T) {
			var reactions []id.EventID
			for _, u := range []roomUser{bob, carol} {
				resp, err := u.c.SendReaction(ctx, room, root, "👍")
				if err != nil {
					t.Fatal(err)
				}
				reactions = append(reactions, resp.EventID)
			}
			rels, err := alice.c.GetRelations(ctx, room, root, &mautrix.ReqGetRelations{RelationType: event.RelAnnotation, EventType: event.EventReaction})
			if err != nil {
				t.Fatal(err)
			}
			var got []id.EventID
			for _, e := range rels.Chunk {
				if err := e.Content.ParseRaw(e.Type); err != nil {
					t.Fatal(err)
				}
				if k := e.Content.AsReaction().RelatesTo.Key; k != "👍" {
					t.Fatalf("reaction key %q", k)
				}
				got = append(got, e.ID)
			}
			if !slices.Equal(got, []id.EventID{reactions[1], reactions[0]}) {
				t.Fatalf("reactions newest first: %v, want %v", got, reactions)
			}
		})

		threadsOf := func(t *testing.T, u roomUser, include string) []string {
			t.Helper()
			var resp struct {
				Chunk []rawEvent `json:"chunk"`
			}
			getJSON(t, u.c, mautrix.ClientURLPath{"v1", "rooms", room, "threads"}, map[string]string{"include": include}, &resp)
			return eventIDs(resp.Chunk)
		}
		root2 := sendText(t, carol, room, "Bella's bloodwork")
		step(t, "/threads orders threads by latest reply", func(t *testing.T) {
			send(alice, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "looks fine", "m.relates_to": inThread(root2)})
			if got := threadsOf(t, alice, "all"); !slices.Equal(got, []string{string(root2), string(root)}) {
				t.Fatalf("threads %v, want root2 then root", got)
			}
			send(alice, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "thanks", "m.relates_to": inThread(root)})
			if got := threadsOf(t, alice, "all"); !slices.Equal(got, []string{string(root), string(root2)}) {
				t.Fatalf("threads after a reply to root %v, want root then root2", got)
			}
			// Carol started root2 and never replied to root.
			if got := threadsOf(t, carol, "participated"); !slices.Equal(got, []string{string(root2)}) {
				t.Fatalf("carol participated in %v", got)
			}
		})

		step(t, "a redacted thread root keeps its thread", func(t *testing.T) {
			// An edit of the root, to see it dropped from the bundle.
			send(alice, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "* corrected",
				"m.new_content": map[string]any{"msgtype": "m.text", "body": "corrected"},
				"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": root}})
			if _, err := alice.c.RedactEvent(ctx, room, root); err != nil {
				t.Fatal(err)
			}
			var ev rawEvent
			getJSON(t, bob.c, mautrix.ClientURLPath{"v3", "rooms", room, "event", root}, nil, &ev)
			if len(ev.Content) != 0 || len(ev.Unsigned.RedactedBecause) == 0 {
				t.Fatalf("redacted root: content %v, redacted_because %s", ev.Content, ev.Unsigned.RedactedBecause)
			}
			rel := ev.Unsigned.Relations
			if rel == nil || rel.Thread == nil || rel.Thread.Count != 2 || rel.Replace != nil {
				t.Fatalf("redacted root's bundle (thread kept, edit dropped): %+v", rel)
			}
			// The children remain: the thread is still listed and readable.
			if got := threadsOf(t, bob, "all"); !slices.Equal(got, []string{string(root), string(root2)}) {
				t.Fatalf("threads after redacting the root: %v", got)
			}
			rels, err := bob.c.GetRelations(ctx, room, root, &mautrix.ReqGetRelations{RelationType: event.RelThread})
			if err != nil || len(rels.Chunk) != 2 {
				t.Fatalf("thread replies after redacting the root: %v %v", rels, err)
			}
			// Redacting a reply breaks its relationship: the count drops.
			if _, err := bob.c.RedactEvent(ctx, room, image); err != nil {
				t.Fatal(err)
			}
			var after rawEvent
			getJSON(t, bob.c, mautrix.ClientURLPath{"v3", "rooms", room, "event", root}, nil, &after)
			if after.Unsigned.Relations == nil || after.Unsigned.Relations.Thread == nil || after.Unsigned.Relations.Thread.Count != 1 {
				t.Fatalf("after redacting a reply: %+v", after.Unsigned.Relations)
			}
		})
	})
}
