package syncapi

import (
	"testing"

	"myelin/internal/apierr"
)

// A threaded receipt follows relationships to the thread: a reaction to a
// threaded reply is in that thread, a reaction to the root is in main.
func TestThreadedReceiptsFollowRelations(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Lab", bob)
		root := e.send(room, alice, "root")
		send := func(content map[string]any) string {
			id, err := e.rooms.Send(ctx, roomserverSend(room, bob, content))
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		reply := send(map[string]any{"msgtype": "m.text", "body": "r", "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		react := func(target string) string {
			req := roomserverSend(room, bob, map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": target, "key": "👍"}})
			req.Type = "m.reaction"
			id, err := e.rooms.Send(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		onReply, onRoot := react(reply), react(root)
		main := "main"
		for _, tc := range []struct {
			name    string
			event   string
			thread  string
			wantErr bool
		}{
			{"reply in its thread", reply, root, false},
			{"reaction to a reply in the reply's thread", onReply, root, false},
			{"reaction to a reply not in main", onReply, main, true},
			{"reaction to the root in main", onRoot, main, false},
			{"reaction to the root not in the thread", onRoot, root, true},
			{"root in main", root, main, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				thread := tc.thread
				err := e.sync.PostReceipt(ctx, alice, room, "m.read", tc.event, &thread)
				if tc.wantErr {
					if ae, ok := apierr.As(err); !ok || ae.Code != "M_INVALID_PARAM" {
						t.Fatalf("got %v, want M_INVALID_PARAM", err)
					}
				} else if err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}
