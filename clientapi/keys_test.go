package clientapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"myelin/account"
	"myelin/e2ee"
	"myelin/roomserver"
	"myelin/syncapi"
)

// keysServer is a handler with rooms and the E2EE endpoints, wired as
// cmd/myelin wires them (account's device hook included).
type keysServer struct {
	*server
	rooms *roomserver.Service
	keys  *e2ee.Service
}

func eachKeysEngine(t *testing.T, fn func(t *testing.T, s *keysServer)) {
	t.Helper()
	eachRoomEngine(t, nil, func(t *testing.T, rs *roomServer) {
		keys, err := e2ee.New(e2ee.Options{DB: rs.db, ServerName: rs.cfg.ServerName})
		if err != nil {
			t.Fatal(err)
		}
		accounts, err := account.New(rs.cfg, rs.db, account.WithClock(rs.clock.now), account.WithDevicesRemoved(keys.DevicesRemoved))
		if err != nil {
			t.Fatal(err)
		}
		h, err := New(Options{Config: rs.cfg, Accounts: accounts, Rooms: rs.rooms, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		rs.svc, rs.h = accounts, h
		fn(t, &keysServer{server: rs.server, rooms: rs.rooms, keys: keys})
	})
}

// clientDevice is a logged-in device with real keys.
type clientDevice struct {
	userID, deviceID, token string
	priv                    ed25519.PrivateKey
}

func (s *keysServer) device(localpart string) *clientDevice {
	s.t.Helper()
	// A second device of a user logs in; the first registers.
	r := s.login(localpart, "password "+localpart, nil)
	if r.status != 200 {
		r = s.register(localpart, "password "+localpart)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &clientDevice{userID: r.str("user_id"), deviceID: r.str("device_id"), token: r.str("access_token"), priv: priv}
}

func enc(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

func randKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return enc(k)
}

// sign adds a signature by keyID to o (over its Canonical JSON without
// signatures and unsigned).
func sign(t *testing.T, o map[string]any, userID, keyID string, priv ed25519.PrivateKey) map[string]any {
	t.Helper()
	c := map[string]any{}
	for k, v := range o {
		if k != "signatures" && k != "unsigned" {
			c[k] = v
		}
	}
	raw, _ := json.Marshal(c)
	canon, err := gmsl.CanonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := o["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
	}
	mine, _ := sigs[userID].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
	}
	mine[keyID] = enc(ed25519.Sign(priv, canon))
	sigs[userID] = mine
	o["signatures"] = sigs
	return o
}

func (d *clientDevice) ed() string { return enc(d.priv.Public().(ed25519.PublicKey)) }

func (d *clientDevice) deviceKeys(t *testing.T) map[string]any {
	return sign(t, map[string]any{
		"user_id": d.userID, "device_id": d.deviceID, "algorithms": []any{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{"ed25519:" + d.deviceID: d.ed(), "curve25519:" + d.deviceID: randKey()},
	}, d.userID, "ed25519:"+d.deviceID, d.priv)
}

func (d *clientDevice) otk(t *testing.T, fallback bool) map[string]any {
	o := map[string]any{"key": randKey()}
	if fallback {
		o["fallback"] = true
	}
	return sign(t, o, d.userID, "ed25519:"+d.deviceID, d.priv)
}

func (s *keysServer) uploadKeys(d *clientDevice, otks int) resp {
	s.t.Helper()
	ks := map[string]any{}
	for i := range otks {
		ks[fmt.Sprintf("signed_curve25519:%s%d", d.deviceID, i)] = d.otk(s.t, false)
	}
	r := s.do("POST", v3+"/keys/upload", d.token, map[string]any{
		"device_keys": d.deviceKeys(s.t), "one_time_keys": ks,
		"fallback_keys": map[string]any{"signed_curve25519:fb": d.otk(s.t, true)},
	})
	s.expect(r, 200, "")
	return r
}

func TestKeysEndpoints(t *testing.T) {
	eachKeysEngine(t, func(t *testing.T, s *keysServer) {
		alice, bob := s.device("alice"), s.device("bob")
		r := s.uploadKeys(alice, 2)
		if counts, _ := r.body["one_time_key_counts"].(map[string]any); counts["signed_curve25519"] != 2.0 {
			t.Fatalf("upload: %s", r.raw)
		}

		// Bad input through the router: exact status and errcode, and the
		// device's keys are unchanged.
		unsigned := alice.deviceKeys(t)
		delete(unsigned, "signatures")
		for _, tc := range []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"not JSON", "POST", "/keys/upload", alice.token, "{", 400, "M_NOT_JSON"},
			{"array body", "POST", "/keys/upload", alice.token, "[]", 400, "M_BAD_JSON"},
			{"one_time_keys an array", "POST", "/keys/upload", alice.token, `{"one_time_keys":[]}`, 400, "M_BAD_JSON"},
			{"device_keys a string", "POST", "/keys/upload", alice.token, `{"device_keys":"x"}`, 400, "M_BAD_JSON"},
			{"unsigned device keys", "POST", "/keys/upload", alice.token, map[string]any{"device_keys": unsigned}, 400, "M_INVALID_PARAM"},
			{"another device's keys", "POST", "/keys/upload", bob.token, map[string]any{"device_keys": alice.deviceKeys(t)}, 400, "M_INVALID_PARAM"},
			{"new keys for a device", "POST", "/keys/upload", alice.token, map[string]any{"device_keys": alice.deviceKeys(t)}, 400, "M_INVALID_PARAM"},
			{"no token", "POST", "/keys/upload", "", map[string]any{}, 401, "M_MISSING_TOKEN"},
			{"wrong method", "GET", "/keys/upload", alice.token, nil, 405, "M_UNRECOGNIZED"},
			{"query without device_keys", "POST", "/keys/query", bob.token, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"query of a non-user", "POST", "/keys/query", bob.token, map[string]any{"device_keys": map[string]any{"alice": []any{}}}, 400, "M_INVALID_PARAM"},
			{"query with a wrong type", "POST", "/keys/query", bob.token, `{"device_keys":{"@a:b":"x"}}`, 400, "M_BAD_JSON"},
			{"claim without one_time_keys", "POST", "/keys/claim", bob.token, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"changes without from", "GET", "/keys/changes?to=s", bob.token, nil, 400, "M_MISSING_PARAM"},
			{"changes with a bad token", "GET", "/keys/changes?from=zzz&to=s", bob.token, nil, 400, "M_INVALID_PARAM"},
			{"signatures not an object", "POST", "/keys/signatures/upload", alice.token, "[]", 400, "M_BAD_JSON"},
			{"cross-signing key of another user", "POST", "/keys/device_signing/upload", alice.token,
				map[string]any{"master_key": map[string]any{"user_id": bob.userID, "usage": []any{"master"}, "keys": map[string]any{}}}, 400, "M_INVALID_PARAM"},
		} {
			r := s.do(tc.method, v3+tc.path, tc.token, tc.body)
			if r.status != tc.status || r.str("errcode") != tc.code {
				t.Errorf("%s: %d %s, want %d %s (%s)", tc.name, r.status, r.str("errcode"), tc.status, tc.code, r.raw)
			}
		}

		// Query and claim.
		r = s.do("POST", v3+"/keys/query", bob.token, map[string]any{"device_keys": map[string]any{alice.userID: []any{}, "@x:remote.example": []any{}}, "timeout": 10000})
		s.expect(r, 200, "")
		devs, _ := r.body["device_keys"].(map[string]any)[alice.userID].(map[string]any)
		dk, _ := devs[alice.deviceID].(map[string]any)
		if dk["device_id"] != alice.deviceID || dk["keys"].(map[string]any)["ed25519:"+alice.deviceID] != alice.ed() {
			t.Fatalf("query: %s", r.raw)
		}
		if r.body["failures"].(map[string]any)["remote.example"] == nil {
			t.Fatalf("remote failure missing: %s", r.raw)
		}
		claimed := map[string]bool{}
		for i := range 3 {
			r = s.do("POST", v3+"/keys/claim", bob.token, map[string]any{"one_time_keys": map[string]any{alice.userID: map[string]any{alice.deviceID: "signed_curve25519"}}})
			s.expect(r, 200, "")
			keys, _ := r.body["one_time_keys"].(map[string]any)[alice.userID].(map[string]any)[alice.deviceID].(map[string]any)
			if len(keys) != 1 {
				t.Fatalf("claim %d: %s", i, r.raw)
			}
			for id := range keys {
				if claimed[id] && id != "signed_curve25519:fb" {
					t.Fatalf("key %s claimed twice", id)
				}
				claimed[id] = true
			}
		}
		if !claimed["signed_curve25519:fb"] || len(claimed) != 3 {
			t.Fatalf("claims: %v (want two one-time keys, then the fallback)", claimed)
		}

		// Device lists: bob shares a room with alice; her new device's keys
		// show up in /keys/changes, and so does its logout.
		room := s.createRoomAs(alice.token)
		s.expect(s.do("POST", v3+"/rooms/"+url.PathEscape(room)+"/join", bob.token, map[string]any{}), 200, "")
		from := s.syncToken()
		alice2 := s.device("alice")
		s.uploadKeys(alice2, 0)
		s.expectChanges(bob, from, []any{alice.userID}, []any{})
		from = s.syncToken()
		s.expect(s.do("POST", v3+"/logout", alice2.token, nil), 200, "")
		s.expectChanges(bob, from, []any{alice.userID}, []any{})
		r = s.do("POST", v3+"/keys/query", bob.token, map[string]any{"device_keys": map[string]any{alice.userID: []any{}}})
		if devs, _ := r.body["device_keys"].(map[string]any)[alice.userID].(map[string]any); len(devs) != 1 || devs[alice2.deviceID] != nil {
			t.Fatalf("logged-out device still listed: %s", r.raw)
		}
		from = s.syncToken()
		s.expect(s.do("POST", v3+"/rooms/"+url.PathEscape(room)+"/leave", bob.token, map[string]any{}), 200, "")
		s.expectChanges(alice, from, []any{}, []any{bob.userID})

		// Send-to-device: idempotent per transaction, delivered by the inbox.
		path := v3 + "/sendToDevice/m.room_key_request/txn1"
		body := map[string]any{"messages": map[string]any{alice.userID: map[string]any{"*": map[string]any{"n": 1}}}}
		s.expect(s.do("PUT", path, bob.token, body), 200, "")
		s.expect(s.do("PUT", path, bob.token, body), 200, "")
		inbox := s.keys.ToDeviceInbox()
		evs, _, err := inbox.ToDevice(context.Background(), alice.userID, alice.deviceID, 0, inbox.StreamPosition(), 100)
		if err != nil || len(evs) != 1 || string(evs[0]) != fmt.Sprintf(`{"sender":%q,"type":"m.room_key_request","content":{"n":1}}`, bob.userID) {
			t.Fatalf("inbox: %s %v", evs, err)
		}
		for _, tc := range []struct {
			name, path string
			body       any
			code       string
		}{
			{"no messages", "/sendToDevice/m.x/t2", map[string]any{}, "M_MISSING_PARAM"},
			{"content not an object", "/sendToDevice/m.x/t3", map[string]any{"messages": map[string]any{alice.userID: map[string]any{"*": 5}}}, "M_BAD_JSON"},
			{"messages of the wrong shape", "/sendToDevice/m.x/t4", `{"messages":{"@a:b":[]}}`, "M_BAD_JSON"},
			{"not a user ID", "/sendToDevice/m.x/t5", map[string]any{"messages": map[string]any{"alice": map[string]any{"*": map[string]any{}}}}, "M_INVALID_PARAM"},
		} {
			r := s.do("PUT", v3+tc.path, bob.token, tc.body)
			if r.status != 400 || r.str("errcode") != tc.code {
				t.Errorf("%s: %d %s (%s)", tc.name, r.status, r.str("errcode"), r.raw)
			}
		}
	})
}

// createRoomAs creates a public room.
func (s *keysServer) createRoomAs(token string) string {
	s.t.Helper()
	r := s.do("POST", v3+"/createRoom", token, map[string]any{"preset": "public_chat"})
	s.expect(r, 200, "")
	return r.str("room_id")
}

// syncToken is a since token at the current positions, as /sync would
// hand out.
func (s *keysServer) syncToken() string {
	dl := s.keys.DeviceLists()
	return syncapi.Token{Events: s.rooms.Notifier().Position(), Ext: map[string]int64{dl.StreamKey(): dl.StreamPosition()}}.String()
}

func (s *keysServer) expectChanges(viewer *clientDevice, from string, changed, left []any) {
	s.t.Helper()
	q := url.Values{"from": {from}, "to": {s.syncToken()}}
	r := s.do("GET", v3+"/keys/changes?"+q.Encode(), viewer.token, nil)
	s.expect(r, 200, "")
	if fmt.Sprint(r.body["changed"]) != fmt.Sprint(changed) || fmt.Sprint(r.body["left"]) != fmt.Sprint(left) {
		s.t.Fatalf("changes for %s: %s; want changed %v left %v", viewer.userID, r.raw, changed, left)
	}
}

func TestCrossSigningEndpoints(t *testing.T) {
	eachKeysEngine(t, func(t *testing.T, s *keysServer) {
		alice := s.device("alice")
		s.uploadKeys(alice, 0)
		keySet := func() (master, ssk map[string]any, masterPriv, sskPriv ed25519.PrivateKey) {
			mpub, mpriv, _ := ed25519.GenerateKey(rand.Reader)
			spub, spriv, _ := ed25519.GenerateKey(rand.Reader)
			m, sp := enc(mpub), enc(spub)
			master = map[string]any{"user_id": alice.userID, "usage": []any{"master"}, "keys": map[string]any{"ed25519:" + m: m}}
			ssk = sign(t, map[string]any{"user_id": alice.userID, "usage": []any{"self_signing"}, "keys": map[string]any{"ed25519:" + sp: sp}},
				alice.userID, "ed25519:"+m, mpriv)
			return master, ssk, mpriv, spriv
		}
		master, ssk, _, sskPriv := keySet()
		up := v3 + "/keys/device_signing/upload"
		// First upload: no UIA. Same keys again: none either.
		s.expect(s.do("POST", up, alice.token, map[string]any{"master_key": master, "self_signing_key": ssk}), 200, "")
		s.expect(s.do("POST", up, alice.token, map[string]any{"master_key": master, "self_signing_key": ssk}), 200, "")
		// Replacing them: a UIA challenge, a wrong password, then the right one.
		master2, ssk2, _, _ := keySet()
		r := s.do("POST", up, alice.token, map[string]any{"master_key": master2, "self_signing_key": ssk2})
		s.expect(r, 401, "")
		session := r.str("session")
		if session == "" || r.body["flows"] == nil {
			t.Fatalf("UIA challenge: %s", r.raw)
		}
		r = s.do("POST", up, alice.token, map[string]any{"master_key": master2, "self_signing_key": ssk2, "auth": passwordAuth("alice", "wrong", session)})
		s.expect(r, 401, "M_FORBIDDEN")
		r = s.do("POST", up, alice.token, map[string]any{"master_key": master2, "self_signing_key": ssk2, "auth": passwordAuth("alice", "password alice", session)})
		s.expect(r, 200, "")
		// The session was used up by that upload.
		master3, ssk3, _, _ := keySet()
		r = s.do("POST", up, alice.token, map[string]any{"master_key": master3, "self_signing_key": ssk3, "auth": passwordAuth("alice", "password alice", session)})
		s.expect(r, 400, "M_UNKNOWN")

		// A signature by the old self-signing key is refused; by the current
		// one accepted.
		var current map[string]any
		r = s.do("POST", v3+"/keys/query", alice.token, map[string]any{"device_keys": map[string]any{alice.userID: []any{alice.deviceID}}})
		current = r.body["device_keys"].(map[string]any)[alice.userID].(map[string]any)[alice.deviceID].(map[string]any)
		delete(current, "unsigned")
		sskPub := ""
		for id := range ssk["keys"].(map[string]any) {
			sskPub = id
		}
		signed := sign(t, current, alice.userID, sskPub, sskPriv)
		r = s.do("POST", v3+"/keys/signatures/upload", alice.token, map[string]any{alice.userID: map[string]any{alice.deviceID: signed}})
		s.expect(r, 200, "")
		f, _ := r.body["failures"].(map[string]any)[alice.userID].(map[string]any)[alice.deviceID].(map[string]any)
		if f["errcode"] != "M_INVALID_SIGNATURE" {
			t.Fatalf("signature by a replaced key: %s", r.raw)
		}
	})
}

func TestKeyBackupEndpoints(t *testing.T) {
	eachKeysEngine(t, func(t *testing.T, s *keysServer) {
		alice := s.device("alice")
		tok := alice.token
		s.expect(s.do("GET", v3+"/room_keys/version", tok, nil), 404, "M_NOT_FOUND")
		create := map[string]any{"algorithm": e2ee.BackupAlgorithm, "auth_data": map[string]any{"public_key": randKey(), "signatures": map[string]any{}}}
		r := s.do("POST", v3+"/room_keys/version", tok, create)
		s.expect(r, 200, "")
		if r.str("version") != "1" {
			t.Fatalf("create: %s", r.raw)
		}
		s.expect(s.do("POST", v3+"/room_keys/version", tok, create), 200, "")
		r = s.do("GET", v3+"/room_keys/version", tok, nil)
		s.expect(r, 200, "")
		if r.str("version") != "2" || r.str("etag") != "0" || r.body["count"] != 0.0 || r.str("algorithm") != e2ee.BackupAlgorithm {
			t.Fatalf("current: %s", r.raw)
		}
		room := "!room:" + s.cfg.ServerName
		keyData := func(fmi int) map[string]any {
			return map[string]any{"first_message_index": fmi, "forwarded_count": 0, "is_verified": false, "session_data": map[string]any{"ciphertext": fmt.Sprint(fmi)}}
		}
		rp := url.PathEscape(room)
		// All three PUT shapes.
		r = s.do("PUT", v3+"/room_keys/keys?version=2", tok, map[string]any{"rooms": map[string]any{room: map[string]any{"sessions": map[string]any{"s1": keyData(5)}}}})
		s.expect(r, 200, "")
		r = s.do("PUT", v3+"/room_keys/keys/"+rp+"?version=2", tok, map[string]any{"sessions": map[string]any{"s2": keyData(1)}})
		s.expect(r, 200, "")
		r = s.do("PUT", v3+"/room_keys/keys/"+rp+"/s1?version=2", tok, keyData(2)) // lower index: replaces
		s.expect(r, 200, "")
		if r.str("etag") != "3" || r.body["count"] != 2.0 {
			t.Fatalf("after puts: %s", r.raw)
		}
		r = s.do("GET", v3+"/room_keys/keys/"+rp+"/s1?version=2", tok, nil)
		s.expect(r, 200, "")
		if r.body["first_message_index"] != 2.0 || r.body["session_data"].(map[string]any)["ciphertext"] != "2" {
			t.Fatalf("session: %s", r.raw)
		}
		r = s.do("GET", v3+"/room_keys/keys?version=2", tok, nil)
		if sessions := r.body["rooms"].(map[string]any)[room].(map[string]any)["sessions"].(map[string]any); len(sessions) != 2 {
			t.Fatalf("all keys: %s", r.raw)
		}
		r = s.do("GET", v3+"/room_keys/keys/"+url.PathEscape("!other:x")+"?version=2", tok, nil)
		s.expect(r, 200, "")
		if r.raw != `{"sessions":{}}` {
			t.Fatalf("empty room: %s", r.raw)
		}
		for _, tc := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"old version", "PUT", "/room_keys/keys/" + rp + "/s9?version=1", keyData(0), 403, "M_WRONG_ROOM_KEYS_VERSION"},
			{"no version", "PUT", "/room_keys/keys/" + rp + "/s9", keyData(0), 400, "M_MISSING_PARAM"},
			{"incomplete key", "PUT", "/room_keys/keys/" + rp + "/s9?version=2", map[string]any{"first_message_index": 0}, 400, "M_BAD_JSON"},
			{"not a room ID", "PUT", "/room_keys/keys/room/s9?version=2", keyData(0), 400, "M_INVALID_PARAM"},
			{"missing session", "GET", "/room_keys/keys/" + rp + "/nope?version=2", nil, 404, "M_NOT_FOUND"},
			{"unknown version", "GET", "/room_keys/keys?version=9", nil, 404, "M_NOT_FOUND"},
			{"unknown version info", "GET", "/room_keys/version/9", nil, 404, "M_NOT_FOUND"},
			{"other algorithm", "PUT", "/room_keys/version/2", map[string]any{"algorithm": "x", "auth_data": map[string]any{}}, 400, "M_INVALID_PARAM"},
			{"body version differs", "PUT", "/room_keys/version/2", map[string]any{"algorithm": e2ee.BackupAlgorithm, "auth_data": create["auth_data"], "version": "1"}, 400, "M_INVALID_PARAM"},
			{"no auth_data", "POST", "/room_keys/version", map[string]any{"algorithm": e2ee.BackupAlgorithm}, 400, "M_MISSING_PARAM"},
		} {
			r := s.do(tc.method, v3+tc.path, tok, tc.body)
			if r.status != tc.status || r.str("errcode") != tc.code {
				t.Errorf("%s: %d %s, want %d %s (%s)", tc.name, r.status, r.str("errcode"), tc.status, tc.code, r.raw)
			}
		}
		r = s.do("PUT", v3+"/room_keys/keys/"+rp+"/s9?version=1", tok, keyData(0))
		if r.str("current_version") != "2" {
			t.Fatalf("current_version missing: %s", r.raw)
		}
		r = s.do("DELETE", v3+"/room_keys/keys/"+rp+"/s2?version=2", tok, nil)
		s.expect(r, 200, "")
		if r.body["count"] != 1.0 {
			t.Fatalf("delete session: %s", r.raw)
		}
		s.expect(s.do("PUT", v3+"/room_keys/version/2", tok, map[string]any{"algorithm": e2ee.BackupAlgorithm, "auth_data": create["auth_data"], "version": "2"}), 200, "")
		s.expect(s.do("DELETE", v3+"/room_keys/version/2", tok, nil), 200, "")
		s.expect(s.do("DELETE", v3+"/room_keys/version/2", tok, nil), 200, "")
		s.expect(s.do("DELETE", v3+"/room_keys/version/5", tok, nil), 404, "M_NOT_FOUND")
		if r := s.do("GET", v3+"/room_keys/version", tok, nil); r.str("version") != "1" {
			t.Fatalf("current after delete: %s", r.raw)
		}
	})
}
