package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestUploadRefusesMalformedKeys(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		d := e.newDevice("alice", "DEV")
		other := e.newDevice("alice", "OTHER")
		resign := func(o map[string]any) map[string]any {
			delete(o, "signatures")
			return signWith(t, o, d.userID, "ed25519:"+d.deviceID, d.priv)
		}
		dk := func(mutate func(map[string]any) any) json.RawMessage {
			return raw(t, mutate(d.deviceKeys(t)))
		}
		otks := func(kv ...any) map[string]json.RawMessage {
			m := map[string]json.RawMessage{}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i].(string)] = raw(t, kv[i+1])
			}
			return m
		}
		valid := raw(t, d.deviceKeys(t))
		many := map[string]json.RawMessage{}
		for i := range maxOneTimeKeysPerUpload + 1 {
			many[fmt.Sprintf("signed_curve25519:k%d", i)] = raw(t, d.signedKey(t, false))
		}
		for _, tc := range []struct {
			name   string
			req    UploadRequest
			status int
			code   string
		}{
			{"device_keys not an object", UploadRequest{DeviceKeys: json.RawMessage(`"keys"`)}, 400, "M_BAD_JSON"},
			{"float in device_keys", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["x"] = 1.5; return o })}, 400, "M_BAD_JSON"},
			{"other user_id", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["user_id"] = "@bob:" + server; return resign(o) })}, 400, "M_INVALID_PARAM"},
			{"other device_id", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["device_id"] = "OTHER"; return resign(o) })}, 400, "M_INVALID_PARAM"},
			{"algorithms missing", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { delete(o, "algorithms"); return resign(o) })}, 400, "M_BAD_JSON"},
			{"algorithms empty", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["algorithms"] = []any{}; return resign(o) })}, 400, "M_INVALID_PARAM"},
			{"algorithms not strings", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["algorithms"] = []any{1}; return resign(o) })}, 400, "M_BAD_JSON"},
			{"no curve25519 key", UploadRequest{DeviceKeys: dk(func(o map[string]any) any {
				delete(o["keys"].(map[string]any), "curve25519:DEV")
				return resign(o)
			})}, 400, "M_INVALID_PARAM"},
			{"short ed25519 key", UploadRequest{DeviceKeys: dk(func(o map[string]any) any {
				o["keys"].(map[string]any)["ed25519:DEV"] = b64(make([]byte, 31))
				return o
			})}, 400, "M_INVALID_PARAM"},
			{"key named for another device", UploadRequest{DeviceKeys: dk(func(o map[string]any) any {
				o["keys"].(map[string]any)["ed25519:OTHER"] = d.ed()
				return resign(o)
			})}, 400, "M_INVALID_PARAM"},
			{"unsigned device keys", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { delete(o, "signatures"); return o })}, 400, "M_INVALID_PARAM"},
			{"tampered device keys", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["algorithms"] = []any{"x"}; return o })}, 400, "M_INVALID_PARAM"},
			{"signed by another device", UploadRequest{DeviceKeys: dk(func(o map[string]any) any {
				delete(o, "signatures")
				return signWith(t, o, d.userID, "ed25519:DEV", other.priv)
			})}, 400, "M_INVALID_PARAM"},
			{"signatures of the wrong shape", UploadRequest{DeviceKeys: dk(func(o map[string]any) any { o["signatures"] = map[string]any{d.userID: "x"}; return o })}, 400, "M_BAD_JSON"},
			{"one-time key name without algorithm", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("AAAA", d.signedKey(t, false))}, 400, "M_INVALID_PARAM"},
			{"unknown one-time key algorithm", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("rot13:AAAA", d.signedKey(t, false))}, 400, "M_INVALID_PARAM"},
			{"signed key not an object", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("signed_curve25519:A", randomKey())}, 400, "M_BAD_JSON"},
			{"signed key without key", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("signed_curve25519:A", signWith(t, map[string]any{}, d.userID, "ed25519:DEV", d.priv))}, 400, "M_BAD_JSON"},
			{"one-time key too short", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("signed_curve25519:A",
				signWith(t, map[string]any{"key": b64(make([]byte, 16))}, d.userID, "ed25519:DEV", d.priv))}, 400, "M_INVALID_PARAM"},
			{"unsigned one-time key", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("signed_curve25519:A", map[string]any{"key": randomKey()})}, 400, "M_INVALID_PARAM"},
			{"one-time key signed by another device", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("signed_curve25519:A",
				signWith(t, map[string]any{"key": randomKey()}, d.userID, "ed25519:DEV", other.priv))}, 400, "M_INVALID_PARAM"},
			{"curve25519 key as object", UploadRequest{DeviceKeys: valid, OneTimeKeys: otks("curve25519:A", map[string]any{"key": randomKey()})}, 400, "M_BAD_JSON"},
			{"fallback flag not a boolean", UploadRequest{DeviceKeys: valid, FallbackKeys: otks("signed_curve25519:F",
				signWith(t, map[string]any{"key": randomKey(), "fallback": "yes"}, d.userID, "ed25519:DEV", d.priv))}, 400, "M_BAD_JSON"},
			{"two fallback keys of one algorithm", UploadRequest{DeviceKeys: valid, FallbackKeys: otks("signed_curve25519:F1", d.signedKey(t, true), "signed_curve25519:F2", d.signedKey(t, true))}, 400, "M_INVALID_PARAM"},
			{"too many one-time keys", UploadRequest{DeviceKeys: valid, OneTimeKeys: many}, 400, "M_INVALID_PARAM"},
		} {
			_, err := e.svc.Upload(ctx, d.id(), tc.req)
			wantCode(t, tc.name, err, tc.status, tc.code)
			// Nothing of a refused request is stored.
			if dks, _ := e.svc.store.DeviceKeys(ctx, "alice", nil); len(dks) != 0 {
				t.Fatalf("%s: device keys stored", tc.name)
			}
			if c, _ := e.svc.OneTimeKeyCounts(ctx, d.userID, "DEV"); len(c) != 0 {
				t.Fatalf("%s: one-time keys stored: %v", tc.name, c)
			}
			if f, _ := e.svc.UnusedFallbackKeyTypes(ctx, d.userID, "DEV"); len(f) != 0 {
				t.Fatalf("%s: fallback key stored", tc.name)
			}
		}
		if len(many) != maxOneTimeKeysPerUpload+1 {
			t.Fatalf("the too-many case has %d keys", len(many))
		}
		_, err := e.svc.Upload(ctx, Device{UserID: "@alice:elsewhere", DeviceID: "DEV"}, UploadRequest{DeviceKeys: valid})
		wantCode(t, "remote user", err, 403, "M_FORBIDDEN")
		if woken := e.takeWoken(); len(woken) != 0 {
			t.Fatalf("refused uploads woke %v", woken)
		}
	})
}

func TestUploadQueryClaim(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a1, a2 := e.newDevice("alice", "A1"), e.newDevice("alice", "A2")
		bob := e.newDevice("bob", "B1")
		if err := e.accounts.SetDeviceDisplayName(ctx, "alice", "A1", "Alice's phone"); err != nil {
			t.Fatal(err)
		}
		pos0 := e.svc.DeviceLists().StreamPosition()
		if counts := e.upload(a1, 3, true); counts["signed_curve25519"] != 3 {
			t.Fatalf("counts %v", counts)
		}
		if p := e.svc.DeviceLists().StreamPosition(); p <= pos0 {
			t.Fatalf("new device keys did not advance the device-list stream (%d → %d)", pos0, p)
		}
		if w := e.takeWoken(); !slices.Equal(w, []string{a1.userID}) {
			t.Fatalf("woken %v, want alice (she shares no room yet)", w)
		}
		e.upload(a2, 0, false)
		e.takeWoken()

		// The same identity keys again: accepted, nothing changes; other
		// keys for the device: refused.
		pos1 := e.svc.DeviceLists().StreamPosition()
		again := UploadRequest{DeviceKeys: raw(t, a1.deviceKeys(t)),
			OneTimeKeys: map[string]json.RawMessage{"curve25519:plain": raw(t, randomKey())}}
		counts, err := e.svc.Upload(ctx, a1.id(), again)
		if err != nil || counts["signed_curve25519"] != 3 || counts["curve25519"] != 1 {
			t.Fatalf("repeat upload: %v %v", counts, err)
		}
		if p := e.svc.DeviceLists().StreamPosition(); p != pos1 {
			t.Fatal("repeated identity keys moved the device-list stream")
		}
		stolen := *a1
		stolen.curve = randomKey()
		_, err = e.svc.Upload(ctx, a1.id(), UploadRequest{DeviceKeys: raw(t, stolen.deviceKeys(t))})
		wantCode(t, "different identity keys", err, 400, "M_INVALID_PARAM")
		_, err = e.svc.Upload(ctx, a1.id(), UploadRequest{OneTimeKeys: map[string]json.RawMessage{"curve25519:plain": raw(t, randomKey())}})
		wantCode(t, "reused one-time key ID", err, 400, "M_INVALID_PARAM")
		// Later one-time keys are checked against the stored device key.
		_, err = e.svc.Upload(ctx, a1.id(), UploadRequest{OneTimeKeys: map[string]json.RawMessage{
			"signed_curve25519:late": raw(t, signWith(t, map[string]any{"key": randomKey()}, a1.userID, "ed25519:A1", bob.priv))}})
		wantCode(t, "one-time key with a bad signature", err, 400, "M_INVALID_PARAM")

		// Query: all devices, one device, a remote user.
		res, err := e.svc.Query(ctx, bob.userID, map[string][]string{a1.userID: {}, "@carol:remote.example": {}})
		if err != nil {
			t.Fatal(err)
		}
		devs := res.DeviceKeys[a1.userID]
		if len(devs) != 2 || devs["A1"] == nil || devs["A2"] == nil {
			t.Fatalf("query: %v", res.DeviceKeys)
		}
		var got map[string]any
		if err := json.Unmarshal(devs["A1"], &got); err != nil {
			t.Fatal(err)
		}
		if got["unsigned"].(map[string]any)["device_display_name"] != "Alice's phone" || got["device_id"] != "A1" {
			t.Fatalf("A1's keys: %s", devs["A1"])
		}
		// What the server hands out still verifies with the device's key.
		obj, _ := parseObject(devs["A1"])
		sigs, _ := signaturesOf(obj)
		if _, good := verify(obj, sigs, a1.userID, "ed25519:A1", a1.ed()); !good {
			t.Fatalf("served device keys do not verify: %s", devs["A1"])
		}
		if res.Failures["remote.example"] == nil || res.DeviceKeys["@carol:remote.example"] != nil {
			t.Fatalf("remote user: failures %v", res.Failures)
		}
		res, _ = e.svc.Query(ctx, bob.userID, map[string][]string{a1.userID: {"A2", "NOPE"}})
		if len(res.DeviceKeys[a1.userID]) != 1 || res.DeviceKeys[a1.userID]["A2"] == nil {
			t.Fatalf("query one device: %v", res.DeviceKeys)
		}
		_, err = e.svc.Query(ctx, bob.userID, map[string][]string{"alice": {}})
		wantCode(t, "query a non-user-ID", err, 400, "M_INVALID_PARAM")

		// Claim: one-time keys once each, then the fallback key.
		claim := func() (string, json.RawMessage) {
			res, err := e.svc.Claim(ctx, map[string]map[string]string{a1.userID: {"A1": "signed_curve25519", "A2": "signed_curve25519"}})
			if err != nil {
				t.Fatal(err)
			}
			if res.OneTimeKeys[a1.userID]["A2"] != nil {
				t.Fatal("A2 has no keys to claim")
			}
			for id, k := range res.OneTimeKeys[a1.userID]["A1"] {
				return id, k
			}
			return "", nil
		}
		seen := map[string]bool{}
		for range 3 {
			id, k := claim()
			if !strings.HasPrefix(id, "signed_curve25519:A1") || seen[id] {
				t.Fatalf("claimed %q (seen before: %v)", id, seen[id])
			}
			seen[id] = true
			obj, _ := parseObject(k)
			sigs, _ := signaturesOf(obj)
			if _, good := verify(obj, sigs, a1.userID, "ed25519:A1", a1.ed()); !good {
				t.Fatalf("claimed key does not verify: %s", k)
			}
		}
		if types, _ := e.svc.UnusedFallbackKeyTypes(ctx, a1.userID, "A1"); !slices.Equal(types, []string{"signed_curve25519"}) {
			t.Fatalf("fallback before use: %v", types)
		}
		for range 2 {
			if id, k := claim(); id != "signed_curve25519:fbA1" || !strings.Contains(string(k), `"fallback":true`) {
				t.Fatalf("fallback claim: %s %s", id, k)
			}
		}
		if types, _ := e.svc.UnusedFallbackKeyTypes(ctx, a1.userID, "A1"); len(types) != 0 {
			t.Fatalf("fallback after use: %v", types)
		}
		if c, _ := e.svc.OneTimeKeyCounts(ctx, a1.userID, "A1"); c["signed_curve25519"] != 0 || c["curve25519"] != 1 {
			t.Fatalf("counts after claims: %v", c)
		}
		res2, err := e.svc.Claim(ctx, map[string]map[string]string{"@dan:remote.example": {"X": "signed_curve25519"}})
		if err != nil || res2.Failures["remote.example"] == nil || len(res2.OneTimeKeys) != 0 {
			t.Fatalf("remote claim: %+v %v", res2, err)
		}
	})
}
