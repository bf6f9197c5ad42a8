package e2ee

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"

	"myelin/storage"
)

// crossKeys is a user's cross-signing key set.
type crossKeys struct {
	userID              string
	master, ssk, usk    ed25519.PrivateKey
	masterB, sskB, uskB string // public keys, unpadded base64
	masterJ, sskJ, uskJ json.RawMessage
	masterO, sskO, uskO map[string]any
}

func newKey(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, b64(pub)
}

func keyObject(userID, usage, pub string) map[string]any {
	return map[string]any{"user_id": userID, "usage": []any{usage}, "keys": map[string]any{"ed25519:" + pub: pub}}
}

func newCrossKeys(t *testing.T, userID string) *crossKeys {
	c := &crossKeys{userID: userID}
	c.master, c.masterB = newKey(t)
	c.ssk, c.sskB = newKey(t)
	c.usk, c.uskB = newKey(t)
	c.masterO = keyObject(userID, "master", c.masterB)
	c.sskO = signWith(t, keyObject(userID, "self_signing", c.sskB), userID, "ed25519:"+c.masterB, c.master)
	c.uskO = signWith(t, keyObject(userID, "user_signing", c.uskB), userID, "ed25519:"+c.masterB, c.master)
	c.masterJ, c.sskJ, c.uskJ = raw(t, c.masterO), raw(t, c.sskO), raw(t, c.uskO)
	return c
}

func (c *crossKeys) upload() CrossSigningUpload {
	return CrossSigningUpload{MasterKey: c.masterJ, SelfSigningKey: c.sskJ, UserSigningKey: c.uskJ}
}

// reauthRecorder is a Reauth that counts calls and answers with session
// (or err).
type reauthRecorder struct {
	calls   int
	session string
	err     error
}

func (r *reauthRecorder) fn(context.Context) (string, error) {
	r.calls++
	return r.session, r.err
}

func TestCrossSigningUpload(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.newDevice("alice", "A1")
		bob := e.newDevice("bob", "B1")
		ck := newCrossKeys(t, alice.userID)
		noAuth := &reauthRecorder{err: errors.New("reauth must not be called")}

		// Refused uploads.
		wrongUsage := keyObject(alice.userID, "self_signing", ck.masterB)
		twoKeys := keyObject(alice.userID, "master", ck.masterB)
		twoKeys["keys"].(map[string]any)["ed25519:"+ck.sskB] = ck.sskB
		misnamed := keyObject(alice.userID, "master", ck.masterB)
		misnamed["keys"] = map[string]any{"ed25519:other": ck.masterB}
		unsignedSSK := keyObject(alice.userID, "self_signing", ck.sskB)
		for _, tc := range []struct {
			name   string
			req    CrossSigningUpload
			status int
			code   string
		}{
			{"not an object", CrossSigningUpload{MasterKey: json.RawMessage(`[]`)}, 400, "M_BAD_JSON"},
			{"other user", CrossSigningUpload{MasterKey: raw(t, keyObject(bob.userID, "master", ck.masterB))}, 400, "M_INVALID_PARAM"},
			{"wrong usage", CrossSigningUpload{MasterKey: raw(t, wrongUsage)}, 400, "M_INVALID_PARAM"},
			{"two keys", CrossSigningUpload{MasterKey: raw(t, twoKeys)}, 400, "M_INVALID_PARAM"},
			{"key ID is not the key", CrossSigningUpload{MasterKey: raw(t, misnamed)}, 400, "M_INVALID_PARAM"},
			{"self-signing key without a master key", CrossSigningUpload{SelfSigningKey: ck.sskJ}, 400, "M_MISSING_PARAM"},
			{"self-signing key not signed by the master key", CrossSigningUpload{MasterKey: ck.masterJ, SelfSigningKey: raw(t, unsignedSSK)}, 400, "M_INVALID_SIGNATURE"},
			{"user-signing key signed by another master", CrossSigningUpload{MasterKey: ck.masterJ, UserSigningKey: newCrossKeys(t, alice.userID).uskJ}, 400, "M_INVALID_SIGNATURE"},
		} {
			err := e.svc.UploadCrossSigning(ctx, alice.userID, tc.req, noAuth.fn)
			wantCode(t, tc.name, err, tc.status, tc.code)
		}
		if cs, _ := e.svc.store.CrossSigningKeys(ctx, "alice"); len(cs) != 0 {
			t.Fatalf("refused uploads stored %v", cs)
		}
		// A key equal to a device ID is forbidden.
		e.newDevice("alice", ck.masterB)
		err := e.svc.UploadCrossSigning(ctx, alice.userID, CrossSigningUpload{MasterKey: ck.masterJ}, noAuth.fn)
		wantCode(t, "key ID in use", err, 403, "M_FORBIDDEN")
		if err := e.accounts.DeleteDevices(ctx, "alice", []string{ck.masterB}, ""); err != nil {
			t.Fatal(err)
		}

		// The first upload needs no auth; the same keys again neither.
		pos := e.svc.DeviceLists().StreamPosition()
		if err := e.svc.UploadCrossSigning(ctx, alice.userID, ck.upload(), noAuth.fn); err != nil {
			t.Fatalf("first upload: %v", err)
		}
		if p := e.svc.DeviceLists().StreamPosition(); p <= pos {
			t.Fatal("cross-signing keys did not advance the device-list stream")
		}
		if err := e.svc.UploadCrossSigning(ctx, alice.userID, ck.upload(), noAuth.fn); err != nil {
			t.Fatalf("repeat upload: %v", err)
		}
		if noAuth.calls != 0 {
			t.Fatalf("reauth called %d times", noAuth.calls)
		}
		// Replacing keys needs auth: a failed auth changes nothing.
		ck2 := newCrossKeys(t, alice.userID)
		denied := &reauthRecorder{err: errors.New("401 auth required")}
		if err := e.svc.UploadCrossSigning(ctx, alice.userID, ck2.upload(), denied.fn); err == nil || denied.calls != 1 {
			t.Fatalf("replacement without auth: %v (reauth calls %d)", err, denied.calls)
		}
		if cs, _ := e.svc.store.CrossSigningKeys(ctx, "alice"); cs["master"].PublicKey != ck.masterB {
			t.Fatal("denied replacement changed the master key")
		}
		// An expired session is M_UNKNOWN.
		gone := &reauthRecorder{session: "no-such-session"}
		err = e.svc.UploadCrossSigning(ctx, alice.userID, ck2.upload(), gone.fn)
		wantCode(t, "vanished session", err, 400, "M_UNKNOWN")
		if err := e.accounts.CreateUIASession(ctx, storage.UIASession{ID: "sess", Kind: ReauthOp, Localpart: "alice", ExpiresTS: 1 << 50}, 0); err != nil {
			t.Fatal(err)
		}
		granted := &reauthRecorder{session: "sess"}
		if err := e.svc.UploadCrossSigning(ctx, alice.userID, ck2.upload(), granted.fn); err != nil || granted.calls != 1 {
			t.Fatalf("replacement with auth: %v (calls %d)", err, granted.calls)
		}
		if cs, _ := e.svc.store.CrossSigningKeys(ctx, "alice"); cs["master"].PublicKey != ck2.masterB || cs["self_signing"].PublicKey != ck2.sskB {
			t.Fatalf("after replacement: %v", cs)
		}

		// Query: master and self-signing keys for everyone, the
		// user-signing key only for its owner.
		res, err := e.svc.Query(ctx, bob.userID, map[string][]string{alice.userID: {}})
		if err != nil || res.MasterKeys[alice.userID] == nil || res.SelfSigningKeys[alice.userID] == nil || len(res.UserSigningKeys) != 0 {
			t.Fatalf("bob's query: %+v %v", res, err)
		}
		res, _ = e.svc.Query(ctx, alice.userID, map[string][]string{alice.userID: {}})
		if res.UserSigningKeys[alice.userID] == nil {
			t.Fatal("alice does not see her own user-signing key")
		}
	})
}

func TestSignaturesUpload(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice, bob, carol := e.newDevice("alice", "A1"), e.newDevice("bob", "B1"), e.newDevice("carol", "C1")
		e.upload(alice, 0, false)
		e.upload(bob, 0, false)
		ak, bk := newCrossKeys(t, alice.userID), newCrossKeys(t, bob.userID)
		noAuth := func(context.Context) (string, error) { return "", errors.New("no auth expected") }
		for _, c := range []*crossKeys{ak, bk} {
			if err := e.svc.UploadCrossSigning(ctx, c.userID, c.upload(), noAuth); err != nil {
				t.Fatal(err)
			}
		}
		e.takeWoken()

		// Alice's self-signing key signs her device; her device signs her
		// master key; her user-signing key signs bob's master key.
		deviceSigned := signWith(t, alice.deviceKeys(t), alice.userID, "ed25519:"+ak.sskB, ak.ssk)
		masterSigned := signWith(t, keyObject(alice.userID, "master", ak.masterB), alice.userID, "ed25519:A1", alice.priv)
		bobSigned := signWith(t, keyObject(bob.userID, "master", bk.masterB), alice.userID, "ed25519:"+ak.uskB, ak.usk)
		// Refused: a forged signature, an object that is not the stored
		// key, an unknown key, a signature by a key with no right to sign.
		forged := signWith(t, alice.deviceKeys(t), alice.userID, "ed25519:"+ak.sskB, bk.ssk)
		tampered := signWith(t, func() map[string]any { o := alice.deviceKeys(t); o["algorithms"] = []any{"x"}; return o }(), alice.userID, "ed25519:"+ak.sskB, ak.ssk)
		byDevice := signWith(t, keyObject(bob.userID, "master", bk.masterB), alice.userID, "ed25519:A1", alice.priv)
		failures, err := e.svc.UploadSignatures(ctx, alice.id(), map[string]map[string]json.RawMessage{
			alice.userID: {"A1": raw(t, deviceSigned), ak.masterB: raw(t, masterSigned), "NOPE": raw(t, deviceSigned)},
			bob.userID:   {bk.masterB: raw(t, bobSigned), "B1": raw(t, forged)},
		})
		if err != nil {
			t.Fatal(err)
		}
		code := func(user, key string) string {
			f, _ := failures[user][key].(map[string]string)
			return f["errcode"]
		}
		if len(failures[alice.userID]) != 1 || code(alice.userID, "NOPE") != "M_NOT_FOUND" || len(failures[bob.userID]) != 1 || code(bob.userID, "B1") != "M_NOT_FOUND" {
			t.Fatalf("failures: %v", failures)
		}
		failures, _ = e.svc.UploadSignatures(ctx, alice.id(), map[string]map[string]json.RawMessage{
			alice.userID: {"A1": raw(t, forged)},
		})
		if code(alice.userID, "A1") != "M_INVALID_SIGNATURE" {
			t.Fatalf("forged: %v", failures)
		}
		failures, _ = e.svc.UploadSignatures(ctx, alice.id(), map[string]map[string]json.RawMessage{
			alice.userID: {"A1": raw(t, tampered)}, bob.userID: {bk.masterB: raw(t, byDevice)},
		})
		if code(alice.userID, "A1") != "M_INVALID_PARAM" || code(bob.userID, bk.masterB) != "M_INVALID_SIGNATURE" {
			t.Fatalf("tampered / unentitled: %v", failures)
		}
		if w := e.takeWoken(); !containsAll(w, alice.userID, bob.userID) {
			t.Fatalf("woken %v", w)
		}

		// What everyone sees: alice's device and master signatures; bob's
		// master key signed by alice only for alice.
		sigsOn := func(js json.RawMessage) signatures {
			obj, err := parseObject(js)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := signaturesOf(obj)
			return s
		}
		res, _ := e.svc.Query(ctx, carol.userID, map[string][]string{alice.userID: {}, bob.userID: {}})
		dev := sigsOn(res.DeviceKeys[alice.userID]["A1"])
		if dev[alice.userID]["ed25519:"+ak.sskB] == "" || dev[alice.userID]["ed25519:A1"] == "" {
			t.Fatalf("alice's device signatures: %v", dev)
		}
		if m := sigsOn(res.MasterKeys[alice.userID]); m[alice.userID]["ed25519:A1"] == "" {
			t.Fatalf("alice's master signatures: %v", m)
		}
		if m := sigsOn(res.MasterKeys[bob.userID]); m[alice.userID] != nil {
			t.Fatalf("carol sees alice's user-signing signature: %v", m)
		}
		res, _ = e.svc.Query(ctx, alice.userID, map[string][]string{bob.userID: {}})
		m := sigsOn(res.MasterKeys[bob.userID])
		if m[alice.userID]["ed25519:"+ak.uskB] == "" {
			t.Fatalf("alice does not see her signature on bob's master key: %v", m)
		}
		// The merged signature verifies.
		obj, _ := parseObject(res.MasterKeys[bob.userID])
		if _, good := verify(obj, m, alice.userID, "ed25519:"+ak.uskB, ak.uskB); !good {
			t.Fatal("served signature on bob's master key does not verify")
		}
	})
}

func containsAll(have []string, want ...string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}
