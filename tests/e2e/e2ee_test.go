//go:build goolm

package e2e

// End-to-end encryption through Myelin with mautrix-go's crypto package
// (the pure-Go goolm implementation of Olm and Megolm, hence the build tag:
// go test -tags goolm ./tests/e2e/). Each user runs a real OlmMachine: it
// uploads device and one-time keys, queries and claims the other's keys,
// shares Megolm sessions over send-to-device, and decrypts what arrives by
// /sync — the path Element and the bridges take.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// lockedBuffer collects a machine's log for a failing test's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cryptoUser is a logged-in device running mautrix's OlmMachine.
type cryptoUser struct {
	roomUser
	password string
	mach     *crypto.OlmMachine
	state    mautrix.StateStore
	since    string
}

// newCryptoUser registers localpart and starts its first device.
func newCryptoUser(t *testing.T, srv *testserver.Server, localpart string) *cryptoUser {
	t.Helper()
	pw := newPassword()
	u := startCrypto(t, srv, registerDummy(t, srv, localpart, pw, "crypto tests"))
	u.password = pw
	return u
}

// startCrypto runs an OlmMachine for a session's device: it loads a fresh
// Olm account and uploads the device keys and one-time keys, exactly as a
// client's first start does.
func startCrypto(t *testing.T, srv *testserver.Server, s session) *cryptoUser {
	t.Helper()
	ctx := context.Background()
	u := &cryptoUser{roomUser: roomUser{session: s, c: s.client(t, srv)}, state: mautrix.NewMemoryStateStore()}
	u.c.StateStore = u.state
	logs := &lockedBuffer{}
	logger := zerolog.New(logs).Level(zerolog.DebugLevel)
	u.mach = crypto.NewOlmMachine(u.c, &logger, crypto.NewMemoryStore(nil), u.state.(crypto.StateStore))
	if err := u.mach.Load(ctx); err != nil {
		t.Fatalf("%s/%s: load olm account: %v", s.UserID, s.DeviceID, err)
	}
	if err := u.mach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("%s/%s: upload keys: %v", s.UserID, s.DeviceID, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s/%s crypto log:\n%s", s.UserID, s.DeviceID, logs)
		}
	})
	return u
}

// syncOnce runs one /sync from the user's position without consuming it.
func (u *cryptoUser) syncOnce(t *testing.T, since string) *mautrix.RespSync {
	t.Helper()
	resp, err := u.c.SyncRequest(context.Background(), 0, since, "", false, "")
	if err != nil {
		t.Fatalf("%s: sync: %v", u.UserID, err)
	}
	return resp
}

// received is a room message as the client decrypted it (err when it
// could not).
type received struct {
	sender  id.UserID
	body    string
	session id.SessionID
	err     error
}

// sync runs one /sync and processes it as a client does: room state into
// the state store, then the crypto sections (to-device messages with room
// keys, device lists, one-time key counts), then the timeline, decrypting
// m.room.encrypted events.
func (u *cryptoUser) sync(t *testing.T) []received {
	t.Helper()
	return u.process(t, u.syncOnce(t, u.since))
}

func (u *cryptoUser) process(t *testing.T, resp *mautrix.RespSync) []received {
	t.Helper()
	ctx := context.Background()
	var timeline []*event.Event
	for roomID, room := range resp.Rooms.Join {
		for _, evt := range append(append([]*event.Event{}, room.State.Events...), room.Timeline.Events...) {
			evt.RoomID = roomID
			if evt.StateKey != nil {
				evt.Type.Class = event.StateEventType
			} else {
				evt.Type.Class = event.MessageEventType
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrUnsupportedContentType) {
				t.Fatalf("%s: parse %s: %v", u.UserID, evt.Type.Type, err)
			}
			mautrix.UpdateStateStore(ctx, u.state, evt)
			if evt.Type == event.StateMember {
				u.mach.HandleMemberEvent(ctx, evt)
			}
		}
		timeline = append(timeline, room.Timeline.Events...)
	}
	u.mach.ProcessSyncResponse(ctx, resp, u.since)
	var out []received
	for _, evt := range timeline {
		if evt.Type != event.EventEncrypted {
			continue
		}
		if _, leaked := evt.Content.Raw["body"]; leaked {
			t.Fatalf("%s: an encrypted event carries a plaintext body", u.UserID)
		}
		session := evt.Content.AsEncrypted().SessionID
		dec, err := u.mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			out = append(out, received{sender: evt.Sender, session: session, err: err})
			continue
		}
		if dec.Content.Parsed == nil {
			_ = dec.Content.ParseRaw(dec.Type)
		}
		msg := dec.Content.AsMessage()
		out = append(out, received{sender: dec.Sender, body: msg.Body, session: session})
	}
	u.since = resp.NextBatch
	return out
}

// sendEncrypted encrypts a text message for the room's members with
// Megolm, sharing the session over Olm first when needed, and sends it.
func (u *cryptoUser) sendEncrypted(t *testing.T, roomID id.RoomID, body string) {
	t.Helper()
	ctx := context.Background()
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	encrypted, err := u.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	if crypto.IsShareError(err) {
		members, merr := u.state.GetRoomJoinedOrInvitedMembers(ctx, roomID)
		if merr != nil {
			t.Fatal(merr)
		}
		if err := u.mach.ShareGroupSession(ctx, roomID, members); err != nil {
			t.Fatalf("%s: share group session: %v", u.UserID, err)
		}
		encrypted, err = u.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	}
	if err != nil {
		t.Fatalf("%s: encrypt: %v", u.UserID, err)
	}
	if _, err := u.c.SendMessageEvent(ctx, roomID, event.EventEncrypted, encrypted); err != nil {
		t.Fatalf("%s: send encrypted: %v", u.UserID, err)
	}
}

func toDeviceSummary(resp *mautrix.RespSync) []string {
	var out []string
	for _, evt := range resp.ToDevice.Events {
		out = append(out, fmt.Sprintf("%s from %s (%s)", evt.Type.Type, evt.Sender, evt.Content.VeryRaw))
	}
	return out
}

func TestEndToEndEncryption(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice, bob := newCryptoUser(t, srv, "alice"), newCryptoUser(t, srv, "bob")
		var roomID id.RoomID

		step(t, "encrypted room", func(t *testing.T) {
			roomID = encryptedRoom(t, alice, bob)
			for _, u := range []*cryptoUser{alice, bob} {
				if enc, _ := u.state.IsEncrypted(ctx, roomID); !enc {
					t.Fatalf("%s does not see the room as encrypted", u.UserID)
				}
			}
		})

		step(t, "alice to bob, room key survives a restart until acknowledged", func(t *testing.T) {
			alice.sendEncrypted(t, roomID, "Rex's lab results are in")
			// Bob's first sync carries the room key (to-device) and the
			// message, but the response is lost: his client never processes
			// it and syncs again from the same token.
			lost := bob.syncOnce(t, bob.since)
			if len(lost.ToDevice.Events) == 0 {
				t.Fatal("no to-device message carries the room key")
			}
			srv.Kill()
			srv.Restart()
			again := bob.syncOnce(t, bob.since)
			if got, want := toDeviceSummary(again), toDeviceSummary(lost); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("to-device after a restart:\n%v\nwant the unacknowledged ones again:\n%v", got, want)
			}
			msgs := bob.process(t, again)
			if len(msgs) != 1 || msgs[0].err != nil || msgs[0].body != "Rex's lab results are in" || msgs[0].sender != alice.UserID {
				t.Fatalf("bob decrypted %+v", msgs)
			}
			// Syncing from the new token acknowledges them: gone for good,
			// even for a fresh initial sync of the same device.
			if resp := bob.syncOnce(t, bob.since); len(resp.ToDevice.Events) != 0 {
				t.Fatalf("acknowledged to-device messages delivered again: %v", toDeviceSummary(resp))
			}
			bob.sync(t)
			if resp := bob.syncOnce(t, ""); len(resp.ToDevice.Events) != 0 {
				t.Fatalf("initial sync after acknowledgement: %v", toDeviceSummary(resp))
			}
		})

		step(t, "bob to alice", func(t *testing.T) {
			bob.sendEncrypted(t, roomID, "Thanks, I'll call the owner")
			msgs := alice.sync(t)
			var bodies []string
			for _, m := range msgs {
				if m.err != nil {
					t.Fatalf("alice cannot decrypt %s's message: %v", m.sender, m.err)
				}
				if m.sender == bob.UserID {
					bodies = append(bodies, m.body)
				}
			}
			if len(bodies) != 1 || bodies[0] != "Thanks, I'll call the owner" {
				t.Fatalf("alice decrypted %+v", msgs)
			}
		})

		step(t, "bob's new device gets the next message", func(t *testing.T) {
			bob2 := startCrypto(t, srv, login(t, srv, "bob", bob.password, "second device"))
			// History from before the device existed stays unreadable to it:
			// that is end-to-end encryption working, not failing.
			for _, m := range bob2.sync(t) {
				if m.err == nil {
					t.Fatalf("the new device decrypted %q, sent before it existed", m.body)
				}
			}
			// Alice hears of the new device in /sync, refetches bob's
			// devices, and shares a new session with both of them.
			alice.since = syncUntil(t, alice, func(resp *mautrix.RespSync) bool {
				return slices.Contains(resp.DeviceLists.Changed, bob.UserID)
			})
			alice.sendEncrypted(t, roomID, "Owner called back: pickup at 5")
			for _, d := range []*cryptoUser{bob, bob2} {
				var fromAlice []received
				for _, m := range d.sync(t) {
					if m.sender == alice.UserID {
						fromAlice = append(fromAlice, m)
					}
				}
				if len(fromAlice) != 1 || fromAlice[0].err != nil || fromAlice[0].body != "Owner called back: pickup at 5" {
					t.Fatalf("%s decrypted %+v", d.DeviceID, fromAlice)
				}
			}
		})
	})
}

// syncUntil syncs u (long-polling, processing every response) until done
// accepts a response, and returns the position after it.
func syncUntil(t *testing.T, u *cryptoUser, done func(*mautrix.RespSync) bool) string {
	t.Helper()
	for range 20 {
		resp, err := u.c.SyncRequest(context.Background(), 5000, u.since, "", false, "")
		if err != nil {
			t.Fatalf("%s: sync: %v", u.UserID, err)
		}
		u.process(t, resp)
		if done(resp) {
			return u.since
		}
	}
	t.Fatalf("%s: the expected sync response never came", u.UserID)
	return ""
}

// encryptedRoom has alice create an encrypted room and bob join it, both
// synced.
func encryptedRoom(t *testing.T, alice, bob *cryptoUser) id.RoomID {
	t.Helper()
	ctx := context.Background()
	room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{bob.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	alice.sync(t)
	bob.sync(t)
	return room.RoomID
}

func TestCrossSigningAndKeyBackup(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice, bob := newCryptoUser(t, srv, "alice"), newCryptoUser(t, srv, "bob")
		uiaCalls := 0
		reauth := func(resp *mautrix.RespUserInteractive) interface{} {
			uiaCalls++
			return map[string]any{"type": "m.login.password", "session": resp.Session, "password": alice.password,
				"identifier": map[string]any{"type": "m.id.user", "user": string(alice.UserID)}}
		}

		step(t, "cross-signing chain verifies for another user", func(t *testing.T) {
			keys, err := alice.mach.GenerateCrossSigningKeys()
			if err != nil {
				t.Fatal(err)
			}
			if err := alice.mach.PublishCrossSigningKeys(ctx, keys, reauth); err != nil {
				t.Fatalf("first upload: %v", err)
			}
			if uiaCalls != 0 {
				t.Fatalf("the first upload asked for a password (%d times)", uiaCalls)
			}
			if err := alice.mach.SignOwnDevice(ctx, alice.mach.OwnIdentity()); err != nil {
				t.Fatalf("sign own device: %v", err)
			}
			devices, err := bob.mach.FetchKeys(ctx, []id.UserID{alice.UserID}, true)
			if err != nil {
				t.Fatal(err)
			}
			dev := devices[alice.UserID][alice.DeviceID]
			if dev == nil {
				t.Fatalf("bob sees no device of alice: %v", devices)
			}
			// device ← self-signing key ← master key, all checked by bob's
			// client from what the server returned.
			if trust, err := bob.mach.ResolveTrustContext(ctx, dev); err != nil || trust != id.TrustStateCrossSignedTOFU {
				t.Fatalf("trust in alice's device: %s %v, want cross-signed (TOFU)", trust, err)
			}
			// Replacing the keys needs the password again.
			keys2, err := alice.mach.GenerateCrossSigningKeys()
			if err != nil {
				t.Fatal(err)
			}
			if err := alice.mach.PublishCrossSigningKeys(ctx, keys2, reauth); err != nil {
				t.Fatalf("replacement: %v", err)
			}
			if uiaCalls != 1 {
				t.Fatalf("replacing cross-signing keys asked for the password %d times, want once", uiaCalls)
			}
			master, err := bob.c.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}}})
			if err != nil {
				t.Fatal(err)
			}
			newMaster := keys2.MasterKey.PublicKey()
			if got := master.MasterKeys[alice.UserID].Keys[id.NewKeyID(id.KeyAlgorithmEd25519, newMaster.String())]; got != newMaster {
				t.Fatalf("bob sees master key %v, want the replacement", master.MasterKeys[alice.UserID].Keys)
			}
		})

		step(t, "a new device restores history from the key backup", func(t *testing.T) {
			roomID := encryptedRoom(t, alice, bob)
			alice.sendEncrypted(t, roomID, "Bella: x-ray clear")
			msgs := bob.sync(t)
			if len(msgs) != 1 || msgs[0].err != nil {
				t.Fatalf("bob: %+v", msgs)
			}
			sessionID := msgs[0].session

			backupKey, err := backup.NewMegolmBackupKey()
			if err != nil {
				t.Fatal(err)
			}
			version, err := bob.c.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
				Algorithm: id.KeyBackupAlgorithmMegolmBackupV1,
				AuthData:  backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(backupKey.PublicKey().Bytes()))},
			})
			if err != nil {
				t.Fatalf("create backup: %v", err)
			}
			sess, err := bob.mach.CryptoStore.GetGroupSession(ctx, roomID, sessionID)
			if err != nil || sess == nil {
				t.Fatalf("bob's inbound session: %v", err)
			}
			first := sess.Internal.FirstKnownIndex()
			exported, err := sess.Internal.Export(first)
			if err != nil {
				t.Fatal(err)
			}
			encrypted, err := backup.EncryptSessionData(backupKey, backup.MegolmSessionData{
				Algorithm: id.AlgorithmMegolmV1, SenderKey: sess.SenderKey, SessionKey: string(exported),
				SenderClaimedKeys: backup.SenderClaimedKeys{Ed25519: sess.SigningKey},
			})
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(encrypted)
			if err != nil {
				t.Fatal(err)
			}
			up, err := bob.c.PutKeysInBackupForRoomAndSession(ctx, version.Version, roomID, sessionID,
				&mautrix.ReqKeyBackupData{FirstMessageIndex: int(first), SessionData: data})
			if err != nil || up.Count != 1 {
				t.Fatalf("back up the session: %+v %v", up, err)
			}

			// A new device of bob's cannot read the message until it restores
			// the backup with the backup key; then it can.
			bob3 := startCrypto(t, srv, login(t, srv, "bob", bob.password, "restored device"))
			if got, err := bob3.mach.DownloadAndStoreLatestKeyBackup(ctx, backupKey); err != nil || got != version.Version {
				t.Fatalf("restore: version %q %v", got, err)
			}
			var restored []string
			for _, m := range bob3.sync(t) {
				if m.err == nil {
					restored = append(restored, m.body)
				}
			}
			if !slices.Equal(restored, []string{"Bella: x-ray clear"}) {
				t.Fatalf("restored device decrypted %q", restored)
			}
		})
	})
}
