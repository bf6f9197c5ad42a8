package e2ee

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"

	"myelin/internal/apierr"
	"myelin/internal/pgtest"
	"myelin/storage"
	"myelin/storage/storagetest"
)

// Nothing the tests start (the roomserver's workers and writer that the device-list
// tests run) may outlive them.
func TestMain(m *testing.M) { os.Exit(pgtest.MainNoLeaks(m)) }

const server = "hs.test"

// env is a Service on a fresh database, with a record of whom it woke.
type env struct {
	t        *testing.T
	db       *storage.DB
	svc      *Service
	accounts *storage.Accounts

	mu    sync.Mutex
	woken []string
}

// eachEngine runs fn on SQLite and on PostgreSQL.
func eachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			db := storagetest.OpenMigrated(t, engine, 4)
			svc, err := New(Options{DB: db, ServerName: server})
			if err != nil {
				t.Fatal(err)
			}
			e := &env{t: t, db: db, svc: svc, accounts: storage.NewAccounts(db)}
			svc.SetWaker(func(users ...string) {
				e.mu.Lock()
				defer e.mu.Unlock()
				e.woken = append(e.woken, users...)
			})
			fn(t, e)
		})
	}
}

// takeWoken returns the users woken since the last call, sorted, unique.
func (e *env) takeWoken() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := slices.Clone(e.woken)
	e.woken = nil
	slices.Sort(out)
	return slices.Compact(out)
}

// device is a client device with real keys.
type device struct {
	userID, deviceID string
	priv             ed25519.PrivateKey
	curve            string
}

var tokenSeq int

// newDevice creates the user (if needed) and a device on the database.
func (e *env) newDevice(localpart, deviceID string) *device {
	e.t.Helper()
	ctx := context.Background()
	tokenSeq++
	tokens := storage.NewTokens{AccessHash: fmt.Sprintf("%s-%s-%d", localpart, deviceID, tokenSeq)}
	if _, err := e.accounts.User(ctx, localpart); errors.Is(err, storage.ErrNotFound) {
		if err := e.accounts.CreateAccount(ctx, storage.NewAccount{Localpart: localpart, CreatedTS: 1,
			Device: &storage.NewDevice{DeviceID: deviceID, TS: 1, Tokens: tokens}}); err != nil {
			e.t.Fatal(err)
		}
	} else if err := e.accounts.Login(ctx, localpart, storage.NewDevice{DeviceID: deviceID, TS: 1, Tokens: tokens}); err != nil {
		e.t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	return &device{userID: "@" + localpart + ":" + server, deviceID: deviceID, priv: priv, curve: randomKey()}
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

func randomKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return b64(k)
}

func (d *device) ed() string { return b64(d.priv.Public().(ed25519.PublicKey)) }
func (d *device) id() Device { return Device{UserID: d.userID, DeviceID: d.deviceID} }

// signWith adds signer's signature by keyID with priv to o.
func signWith(t *testing.T, o map[string]any, signer, keyID string, priv ed25519.PrivateKey) map[string]any {
	t.Helper()
	raw, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := parseObject(raw)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := signedBytes(obj)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := o["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
	}
	mine, _ := sigs[signer].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
	}
	mine[keyID] = b64(ed25519.Sign(priv, msg))
	sigs[signer] = mine
	o["signatures"] = sigs
	return o
}

// deviceKeys is the device's signed device_keys object.
func (d *device) deviceKeys(t *testing.T) map[string]any {
	o := map[string]any{
		"user_id": d.userID, "device_id": d.deviceID,
		"algorithms": []any{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]any{"ed25519:" + d.deviceID: d.ed(), "curve25519:" + d.deviceID: d.curve},
	}
	return signWith(t, o, d.userID, "ed25519:"+d.deviceID, d.priv)
}

// signedKey is a signed_curve25519 key object signed by the device.
func (d *device) signedKey(t *testing.T, fallback bool) map[string]any {
	o := map[string]any{"key": randomKey()}
	if fallback {
		o["fallback"] = true
	}
	return signWith(t, o, d.userID, "ed25519:"+d.deviceID, d.priv)
}

func raw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload sends the device's keys: identity keys, n one-time keys and a
// fallback key.
func (e *env) upload(d *device, n int, fallback bool) map[string]int {
	e.t.Helper()
	req := UploadRequest{DeviceKeys: raw(e.t, d.deviceKeys(e.t)), OneTimeKeys: map[string]json.RawMessage{}}
	for i := range n {
		req.OneTimeKeys["signed_curve25519:"+d.deviceID+strconv.Itoa(i)] = raw(e.t, d.signedKey(e.t, false))
	}
	if fallback {
		req.FallbackKeys = map[string]json.RawMessage{"signed_curve25519:fb" + d.deviceID: raw(e.t, d.signedKey(e.t, true))}
	}
	counts, err := e.svc.Upload(context.Background(), d.id(), req)
	if err != nil {
		e.t.Fatalf("upload for %s: %v", d.deviceID, err)
	}
	return counts
}

// wantCode checks err is an *apierr.Error with this status and errcode.
func wantCode(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	ae, ok := apierr.As(err)
	if !ok || ae.Status != status || ae.Code != code {
		t.Fatalf("%s: got %v, want %d %s", what, err, status, code)
	}
}
