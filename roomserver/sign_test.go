package roomserver

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestSignMatchesGMSL builds the same events with gmsl's EventBuilder and
// with eventDraft.sign and requires identical bytes and event IDs, and a
// signature gmsl verifies.
func TestSignMatchesGMSL(t *testing.T) {
	contents := []string{
		`{}`,
		`{"body":"hello","msgtype":"m.text"}`,
		`{"body":"<b>&amp;</b> \u2028 \u2029 é 🐾 \"q\" back\\slash \/ tab\t nl\n cr\r bell\u0007 bs\b ff\f","n":-9007199254740991,"z":[1,{"b":2,"a":[]}]}`,
		`{"membership":"join","displayname":"Dr. Bäcker <vet>","avatar_url":"mxc://clinic.test/abc"}`,
		`{"membership":"invite","join_authorised_via_users_server":"@a:clinic.test","reason":"x"}`,
		`{"users":{"@a:clinic.test":100},"events":{"m.room.name":50},"ban":50,"invite":0,"notifications":{"room":50}}`,
		`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!s:clinic.test"}]}`,
		`{"history_visibility":"joined","extra":true}`,
		`{"redacts":"$abc","reason":"oops"}`,
		`{"room_version":"12","additional_creators":["@b:clinic.test"],"type":"m.space","m.federate":false}`,
		`{"unicode_key_é":1,"Z":2,"a":null}`,
	}
	types := []struct {
		typ      string
		stateKey *string
	}{
		{"m.room.message", nil}, {"m.room.topic", sp("")}, {"m.room.member", sp("@a:clinic.test")},
		{"m.room.power_levels", sp("")}, {"m.room.join_rules", sp("")}, {"m.room.history_visibility", sp("")},
		{"m.room.redaction", nil}, {"m.room.create", sp("")}, {"org.example.profile", sp("@a:clinic.test")},
		{"m.room.name", sp("nön-empty \"key\"")}, {"m.room.aliases", sp("clinic.test")},
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	now := time.UnixMilli(1_763_000_000_123)
	n := 0
	for _, v := range CreatableRoomVersions {
		verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(v))
		for _, tt := range types {
			for _, c := range contents {
				canon, err := gmsl.CanonicalJSON([]byte(c))
				if err != nil {
					t.Fatal(err)
				}
				roomID := "!room:clinic.test"
				if verImpl.DomainlessRoomIDs() {
					roomID = "!" + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
				}
				if tt.typ == "m.room.create" && verImpl.DomainlessRoomIDs() {
					roomID = ""
				}
				pe := &gmsl.ProtoEvent{SenderID: "@a:clinic.test", RoomID: roomID, Type: tt.typ, StateKey: tt.stateKey,
					Content: spec.RawJSON(canon), Depth: 42, PrevEvents: []string{"$prev1", "$prev2"}, AuthEvents: []string{"$auth"}}
				if tt.typ == "m.room.redaction" && !redactsInContent(verImpl.Version()) {
					pe.Redacts = "$target"
				}
				want, err := verImpl.NewEventBuilderFromProtoEvent(pe).Build(now, "clinic.test", "ed25519:k", key)
				if err != nil {
					t.Fatalf("gmsl build: %v", err)
				}
				d := eventDraft{authEvents: []string{"$auth"}, content: canon, depth: 42, origin: "clinic.test", ts: now.UnixMilli(),
					prevEvents: []string{"$prev1", "$prev2"}, redacts: pe.Redacts, roomID: roomID, sender: "@a:clinic.test",
					stateKey: tt.stateKey, typ: tt.typ}
				got, id, err := d.sign(verImpl, "ed25519:k", key)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("v%s %s %s", v, tt.typ, c)
				if !bytes.Equal(got, want.JSON()) {
					t.Fatalf("%s:\n got %s\nwant %s", name, got, want.JSON())
				}
				if id != want.EventID() {
					t.Fatalf("%s: event ID %s, want %s", name, id, want.EventID())
				}
				redacted, _ := verImpl.RedactEventJSON(got)
				if err := gmsl.VerifyJSON("clinic.test", "ed25519:k", key.Public().(ed25519.PublicKey), redacted); err != nil {
					t.Fatalf("%s: signature does not verify: %v", name, err)
				}
				n++
			}
		}
	}
	t.Logf("%d events identical to gmsl's", n)
}
