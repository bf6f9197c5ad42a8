package syncapi

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
)

func accountTypes(b batch) map[string]string {
	out := map[string]string{}
	for _, e := range b.Events {
		out[e.Type] = string(e.Content)
	}
	return out
}

func TestAccountDataAndTags(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Billing", bob)
		first := e.do(Request{UserID: alice})

		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(e.sync.PutAccountData(ctx, alice, "", "m.direct", raw(map[string]any{bob: []string{room}})))
		must(e.sync.PutAccountData(ctx, alice, "", "chat.myelin.layout", raw(map[string]any{"compact": true})))
		must(e.sync.PutAccountData(ctx, alice, room, "chat.myelin.draft", raw(map[string]any{"text": "x"})))
		must(e.sync.PutTag(ctx, alice, room, "m.favourite", raw(map[string]any{"order": 0.25})))
		must(e.sync.PutTag(ctx, alice, room, "u.Work", raw(map[string]any{})))
		must(e.sync.DeleteTag(ctx, alice, room, "u.Work"))
		must(e.sync.DeleteTag(ctx, alice, room, "u.Absent"))
		// Replacing keeps one entry with the latest content.
		must(e.sync.PutAccountData(ctx, alice, "", "chat.myelin.layout", raw(map[string]any{"compact": false})))

		got, err := e.sync.AccountData(ctx, alice, "", "chat.myelin.layout")
		if err != nil || string(got) != `{"compact":false}` {
			t.Fatalf("GET global = %s, %v", got, err)
		}
		got, err = e.sync.AccountData(ctx, alice, room, "chat.myelin.draft")
		if err != nil || string(got) != `{"text":"x"}` {
			t.Fatalf("GET room = %s, %v", got, err)
		}
		tags, err := e.sync.Tags(ctx, alice, room)
		if err != nil || string(tags) != `{"tags":{"m.favourite":{"order":0.25}}}` {
			t.Fatalf("tags = %s, %v", tags, err)
		}
		if tags, _ := e.sync.Tags(ctx, bob, room); string(tags) != `{"tags":{}}` {
			t.Fatalf("no tags = %s", tags)
		}

		inc := e.do(Request{UserID: alice, Since: first.NextBatch})
		global := accountTypes(inc.AccountData)
		if len(global) != 2 || global["chat.myelin.layout"] != `{"compact":false}` || global["m.direct"] == "" {
			t.Fatalf("global account data = %v", global)
		}
		perRoom := accountTypes(inc.Rooms.Join[room].AccountData)
		if perRoom["m.tag"] != `{"tags":{"m.favourite":{"order":0.25}}}` || perRoom["chat.myelin.draft"] == "" {
			t.Fatalf("room account data = %v", perRoom)
		}
		// Bob sees none of it.
		if r := e.do(Request{UserID: bob}); len(r.AccountData.Events) != 0 || len(r.Rooms.Join[room].AccountData.Events) != 0 {
			t.Fatalf("bob sees alice's account data")
		}
		// Filters: types and not_types on global and room account data.
		f := `{"account_data":{"types":["m.direct"]},"room":{"account_data":{"not_types":["m.tag"]}}}`
		filtered := e.do(Request{UserID: alice, Filter: f})
		if g := accountTypes(filtered.AccountData); len(g) != 1 || g["m.direct"] == "" {
			t.Fatalf("filtered global = %v", g)
		}
		if r := accountTypes(filtered.Rooms.Join[room].AccountData); r["m.tag"] != "" || r["chat.myelin.draft"] == "" {
			t.Fatalf("filtered room = %v", r)
		}

		bad := []struct {
			name   string
			err    error
			code   string
			status int
		}{
			{"fully_read", e.sync.PutAccountData(ctx, alice, room, "m.fully_read", raw(map[string]any{"event_id": "$x"})), "M_BAD_JSON", 405},
			{"push_rules", e.sync.PutAccountData(ctx, alice, "", "m.push_rules", raw(map[string]any{})), "M_BAD_JSON", 405},
			{"not an object", e.sync.PutAccountData(ctx, alice, "", "x.y", json.RawMessage(`[1]`)), "M_BAD_JSON", 400},
			{"bad room", e.sync.PutAccountData(ctx, alice, "room", "x.y", raw(map[string]any{})), "M_INVALID_PARAM", 400},
			{"empty type", e.sync.PutAccountData(ctx, alice, "", "", raw(map[string]any{})), "M_INVALID_PARAM", 400},
			{"tag too long", e.sync.PutTag(ctx, alice, room, string(make([]byte, 256)), raw(map[string]any{})), "M_INVALID_PARAM", 400},
			{"tag order not a number", e.sync.PutTag(ctx, alice, room, "u.x", json.RawMessage(`{"order":"first"}`)), "M_BAD_JSON", 400},
			{"tag not an object", e.sync.PutTag(ctx, alice, room, "u.x", json.RawMessage(`"x"`)), "M_BAD_JSON", 400},
		}
		for _, c := range bad {
			if c.err == nil {
				t.Fatalf("%s: accepted", c.name)
			}
			wantErr(t, c.err, c.code, c.status)
		}
		_, err = e.sync.AccountData(ctx, alice, "", "never.set")
		wantErr(t, err, "M_NOT_FOUND", 404)
		_, err = e.sync.AccountData(ctx, alice, "bad", "x")
		wantErr(t, err, "M_INVALID_PARAM", 400)
	})
}

func TestIgnoredUsers(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, mallory := user("alice"), user("bob"), user("mallory")
		room := e.room(alice, "Waiting room", bob, mallory)
		e.send(room, mallory, "spam-1")
		e.send(room, alice, "hello")
		if err := e.sync.PutAccountData(ctx, bob, "", "m.ignored_user_list", raw(map[string]any{"ignored_users": map[string]any{mallory: map[string]any{}}})); err != nil {
			t.Fatal(err)
		}
		topic := e.state(room, mallory, "m.room.member", mallory, map[string]any{"membership": "join", "displayname": "Mal"})
		e.send(room, mallory, "spam-2")
		e.send(room, alice, "bye")

		r := e.do(Request{UserID: bob, Filter: `{"room":{"timeline":{"limit":50}}}`})
		tl := r.Rooms.Join[room].Timeline.Events
		if b := bodies(tl); !slices.Equal(b, []string{"hello", "bye"}) {
			t.Fatalf("timeline bodies = %v", b)
		}
		if !slices.ContainsFunc(tl, func(c testEvent) bool { return c.EventID == topic }) {
			t.Fatal("an ignored user's state event disappeared")
		}
		msgs, err := e.sync.Messages(ctxT(t), MessagesRequest{UserID: bob, RoomID: room, Dir: "b", Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		if b := bodies(decodeChunk(t, msgs.Chunk)); !slices.Equal(b, []string{"bye", "hello"}) {
			t.Fatalf("/messages bodies = %v", b)
		}
		// Alice still sees everything; un-ignoring brings mallory back.
		if b := bodies(e.do(Request{UserID: alice, Filter: `{"room":{"timeline":{"limit":50}}}`}).Rooms.Join[room].Timeline.Events); len(b) != 4 {
			t.Fatalf("alice's timeline = %v", b)
		}
		if err := e.sync.PutAccountData(ctx, bob, "", "m.ignored_user_list", raw(map[string]any{"ignored_users": map[string]any{}})); err != nil {
			t.Fatal(err)
		}
		if b := bodies(e.do(Request{UserID: bob, Filter: `{"room":{"timeline":{"limit":50}}}`}).Rooms.Join[room].Timeline.Events); len(b) != 4 {
			t.Fatalf("after un-ignoring = %v", b)
		}
	})
}

// fakePushRules is a PushRulesSource answering fixed content per user.
type fakePushRules map[string]string

func (f fakePushRules) PushRulesContent(_ context.Context, userID string) (json.RawMessage, error) {
	return json.RawMessage(f[userID]), nil
}

// TestInitialSyncCarriesPushRules: a user who never edited their push rules
// still gets m.push_rules in every initial sync (from the provider), never
// in an incremental one, and stored rules win over the provider's.
func TestInitialSyncCarriesPushRules(t *testing.T) {
	alice := user("alice")
	defaults := `{"global":{"override":[{"rule_id":".m.rule.master"}]}}`
	eachEngine(t, func(o *Options) { o.PushRules = fakePushRules{alice: defaults} }, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		first := e.do(Request{UserID: alice})
		if got := accountTypes(first.AccountData); len(got) != 1 || got["m.push_rules"] != defaults {
			t.Fatalf("initial sync account data = %v", got)
		}
		if got := accountTypes(e.do(Request{UserID: alice, Filter: `{"account_data":{"not_types":["m.push_rules"]}}`}).AccountData); len(got) != 0 {
			t.Fatalf("filtered out, still got %v", got)
		}
		if err := e.sync.PutAccountData(ctx, alice, "", "chat.myelin.layout", raw(map[string]any{"compact": true})); err != nil {
			t.Fatal(err)
		}
		if got := accountTypes(e.do(Request{UserID: alice, Since: first.NextBatch}).AccountData); len(got) != 1 || got["m.push_rules"] != "" {
			t.Fatalf("incremental sync account data = %v", got)
		}
		edited := `{"global":{"override":[]}}`
		if err := e.sync.SetAccountData(ctx, alice, "", "m.push_rules", json.RawMessage(edited)); err != nil {
			t.Fatal(err)
		}
		again := e.do(Request{UserID: alice})
		n := 0
		for _, ev := range again.AccountData.Events {
			if ev.Type == "m.push_rules" {
				n++
			}
		}
		if got := accountTypes(again.AccountData); n != 1 || got["m.push_rules"] != edited {
			t.Fatalf("stored rules: %d entries, %v", n, got)
		}
	})
}
