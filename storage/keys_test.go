package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"myelin/storage"
)

// keysFixture creates alice with devices A1 and A2 and bob with B1.
func keysFixture(t *testing.T, db *storage.DB) *storage.Keys {
	t.Helper()
	a := storage.NewAccounts(db)
	mustCreate(t, a, "alice", "A1", "tok-a1", "")
	if err := a.Login(context.Background(), "alice", storage.NewDevice{DeviceID: "A2", TS: 1, Tokens: storage.NewTokens{AccessHash: "tok-a2"}}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, a, "bob", "B1", "tok-b1", "")
	return storage.NewKeys(db)
}

func devKeys(device, variant string) *storage.DeviceKeys {
	return &storage.DeviceKeys{JSON: []byte(fmt.Sprintf(`{"device_id":%q,"v":%q}`, device, variant)), Fingerprint: "fp-" + device + variant, Ed25519: "ed-" + device}
}

func otk(alg, id string) storage.OneTimeKey {
	return storage.OneTimeKey{Algorithm: alg, KeyID: id, JSON: []byte(fmt.Sprintf(`{"key":%q}`, id))}
}

func position(t *testing.T, k *storage.Keys, stream string) int64 {
	t.Helper()
	p, err := k.StreamPosition(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeysUploadClaim(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db)
		if p := position(t, k, storage.StreamDeviceLists); p != 0 {
			t.Fatalf("fresh device-list position %d", p)
		}

		counts, pos, err := k.Upload(ctx, storage.KeyUpload{Localpart: "alice", DeviceID: "A1", DeviceKeys: devKeys("A1", "1"),
			OneTimeKeys:  []storage.OneTimeKey{otk("signed_curve25519", "k2"), otk("signed_curve25519", "k1")},
			FallbackKeys: []storage.OneTimeKey{otk("signed_curve25519", "f1")}, TS: 5})
		if err != nil || pos != 1 || counts["signed_curve25519"] != 2 {
			t.Fatalf("first upload: counts %v pos %d err %v", counts, pos, err)
		}
		// The same identity keys again change nothing; a second batch of
		// one-time keys is claimed after the first.
		counts, pos, err = k.Upload(ctx, storage.KeyUpload{Localpart: "alice", DeviceID: "A1", DeviceKeys: devKeys("A1", "1"),
			OneTimeKeys: []storage.OneTimeKey{otk("signed_curve25519", "k0"), otk("signed_curve25519", "k1")}, TS: 6})
		if err != nil || pos != 0 || counts["signed_curve25519"] != 3 {
			t.Fatalf("repeat upload: counts %v pos %d err %v", counts, pos, err)
		}

		// Refused uploads store nothing, not even their valid parts.
		for name, u := range map[string]storage.KeyUpload{
			"other identity keys": {DeviceKeys: devKeys("A1", "2"), OneTimeKeys: []storage.OneTimeKey{otk("signed_curve25519", "new")}},
			"reused key id":       {OneTimeKeys: []storage.OneTimeKey{otk("signed_curve25519", "x1"), {Algorithm: "signed_curve25519", KeyID: "k1", JSON: []byte(`{"key":"other"}`)}}},
		} {
			u.Localpart, u.DeviceID = "alice", "A1"
			_, _, err := k.Upload(ctx, u)
			var kc *storage.KeyConflict
			if !errors.As(err, &kc) || !errors.Is(err, storage.ErrConflict) {
				t.Fatalf("%s: %v, want KeyConflict", name, err)
			}
		}
		if c, _ := k.OneTimeKeyCounts(ctx, "alice", "A1"); c["signed_curve25519"] != 3 {
			t.Fatalf("counts after refused uploads: %v", c)
		}
		if _, _, err := k.Upload(ctx, storage.KeyUpload{Localpart: "alice", DeviceID: "GONE", DeviceKeys: devKeys("GONE", "1")}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("upload for a missing device: %v", err)
		}

		dks, err := k.DeviceKeys(ctx, "alice", nil)
		if err != nil || len(dks) != 1 || dks[0].DeviceID != "A1" || string(dks[0].JSON) != `{"device_id":"A1","v":"1"}` ||
			dks[0].Ed25519 != "ed-A1" || dks[0].DisplayName == nil || *dks[0].DisplayName != "phone" {
			t.Fatalf("device keys: %+v %v", dks, err)
		}
		if dks, _ := k.DeviceKeys(ctx, "alice", []string{"A2", "NOPE"}); len(dks) != 0 {
			t.Fatalf("keys of a device without keys: %+v", dks)
		}

		// Claims: oldest batch first (k1, k2 — key ID order within a
		// batch), then k0, then the fallback key, marked used.
		want := []string{"k1", "k2", "k0", "f1", "f1"}
		for i, w := range want {
			got, err := k.Claim(ctx, []storage.ClaimRequest{{Localpart: "alice", DeviceID: "A1", Algorithm: "signed_curve25519"}})
			if err != nil || len(got) != 1 || got[0].KeyID != w || got[0].Fallback != (w == "f1") || string(got[0].JSON) != fmt.Sprintf(`{"key":%q}`, w) {
				t.Fatalf("claim %d: %+v %v, want %s", i, got, err, w)
			}
		}
		if types, _ := k.UnusedFallbackKeyTypes(ctx, "alice", "A1"); len(types) != 0 {
			t.Fatalf("used fallback still unused: %v", types)
		}
		// Re-uploading the same fallback key keeps it used; a new one is unused.
		fallback := func(id string) {
			if _, _, err := k.Upload(ctx, storage.KeyUpload{Localpart: "alice", DeviceID: "A1", FallbackKeys: []storage.OneTimeKey{otk("signed_curve25519", id)}}); err != nil {
				t.Fatal(err)
			}
		}
		fallback("f1")
		if types, _ := k.UnusedFallbackKeyTypes(ctx, "alice", "A1"); len(types) != 0 {
			t.Fatalf("re-uploaded used fallback: %v", types)
		}
		fallback("f2")
		if types, _ := k.UnusedFallbackKeyTypes(ctx, "alice", "A1"); !slices.Equal(types, []string{"signed_curve25519"}) {
			t.Fatalf("new fallback: %v", types)
		}
		// Nothing to claim: left out of the result.
		got, err := k.Claim(ctx, []storage.ClaimRequest{{Localpart: "alice", DeviceID: "A2", Algorithm: "signed_curve25519"},
			{Localpart: "alice", DeviceID: "A1", Algorithm: "curve25519"}, {Localpart: "nobody", DeviceID: "X", Algorithm: "signed_curve25519"}})
		if err != nil || len(got) != 0 {
			t.Fatalf("claims with nothing to claim: %+v %v", got, err)
		}
	})
}

func TestKeysConcurrentClaims(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db)
		var keys []storage.OneTimeKey
		for i := range 20 {
			keys = append(keys, otk("signed_curve25519", fmt.Sprintf("k%02d", i)))
		}
		if _, _, err := k.Upload(ctx, storage.KeyUpload{Localpart: "bob", DeviceID: "B1", OneTimeKeys: keys,
			FallbackKeys: []storage.OneTimeKey{otk("signed_curve25519", "fb")}}); err != nil {
			t.Fatal(err)
		}
		var (
			mu       sync.Mutex
			got      = map[string]int{}
			fallback int
			wg       sync.WaitGroup
		)
		for range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := k.Claim(ctx, []storage.ClaimRequest{{Localpart: "bob", DeviceID: "B1", Algorithm: "signed_curve25519"}})
				if err != nil || len(c) != 1 {
					t.Errorf("claim: %+v %v", c, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if c[0].Fallback {
					fallback++
				} else {
					got[c[0].KeyID]++
				}
			}()
		}
		wg.Wait()
		if len(got) != 20 || fallback != 10 {
			t.Fatalf("claimed %d distinct one-time keys and %d fallbacks, want 20 and 10", len(got), fallback)
		}
		for id, n := range got {
			if n != 1 {
				t.Fatalf("one-time key %s handed out %d times", id, n)
			}
		}
	})
}

func TestKeysDroppedWithDevices(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db)
		a := storage.NewAccounts(db)
		for _, d := range []string{"A1", "A2"} {
			if _, _, err := k.Upload(ctx, storage.KeyUpload{Localpart: "alice", DeviceID: d, DeviceKeys: devKeys(d, "1"),
				OneTimeKeys: []storage.OneTimeKey{otk("signed_curve25519", "k")}, FallbackKeys: []storage.OneTimeKey{otk("signed_curve25519", "f")}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := k.AddSignatures(ctx, []storage.Signature{{TargetLocalpart: "alice", TargetKeyID: "A2", SignerUserID: "@alice:hs", SignerKeyID: "ed25519:ssk", Signature: "sig"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := k.SendToDevice(ctx, storage.ToDeviceSend{SenderLocalpart: "bob", SenderDevice: "B1", TxnID: "t", Sender: "@bob:hs",
			Type: "m.test", Messages: []storage.ToDeviceRecipient{{Localpart: "alice", DeviceID: "*", Content: []byte(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
		before := position(t, k, storage.StreamDeviceLists)
		if err := a.DeleteDevices(ctx, "alice", []string{"A2"}, ""); err != nil {
			t.Fatal(err)
		}
		after := position(t, k, storage.StreamDeviceLists)
		if after != before+1 {
			t.Fatalf("deleting a device with keys: position %d → %d", before, after)
		}
		if changed, _ := k.DeviceListChanges(ctx, before, after); !slices.Equal(changed, []string{"alice"}) {
			t.Fatalf("changes: %v", changed)
		}
		// A2's rows are gone; recreating A2 starts clean (new keys accepted).
		if err := a.Login(ctx, "alice", storage.NewDevice{DeviceID: "A2", TS: 2, Tokens: storage.NewTokens{AccessHash: "tok-a2b"}}); err != nil {
			t.Fatal(err)
		}
		if c, _ := k.OneTimeKeyCounts(ctx, "alice", "A2"); len(c) != 0 {
			t.Fatalf("one-time keys survived the device: %v", c)
		}
		if f, _ := k.UnusedFallbackKeyTypes(ctx, "alice", "A2"); len(f) != 0 {
			t.Fatalf("fallback keys survived the device: %v", f)
		}
		if s, _ := k.Signatures(ctx, "alice", []string{"A2"}); len(s) != 0 {
			t.Fatalf("signatures survived the device: %v", s)
		}
		if ev, _, _ := k.PendingToDevice(ctx, "alice", "A2", 0, 100, 10); len(ev) != 0 {
			t.Fatalf("to-device messages survived the device: %v", ev)
		}
		if _, _, err := k.Upload(ctx, storage.KeyUpload{Localpart: "alice", DeviceID: "A2", DeviceKeys: devKeys("A2", "new")}); err != nil {
			t.Fatalf("new keys for a recreated device: %v", err)
		}
		// A1 is untouched.
		if c, _ := k.OneTimeKeyCounts(ctx, "alice", "A1"); c["signed_curve25519"] != 1 {
			t.Fatalf("A1 lost keys: %v", c)
		}
		if ev, _, _ := k.PendingToDevice(ctx, "alice", "A1", 0, 100, 10); len(ev) != 1 {
			t.Fatalf("A1 lost its message: %v", ev)
		}

		// Deleting all but A1 (password change, logout/all) drops A2 again.
		before = position(t, k, storage.StreamDeviceLists)
		if err := a.DeleteDevicesExcept(ctx, "alice", "A1"); err != nil {
			t.Fatal(err)
		}
		if dks, _ := k.DeviceKeys(ctx, "alice", nil); len(dks) != 1 || dks[0].DeviceID != "A1" {
			t.Fatalf("keys after delete-except: %+v", dks)
		}
		if p := position(t, k, storage.StreamDeviceLists); p != before+1 {
			t.Fatalf("delete-except: position %d → %d", before, p)
		}
		// A device that never had identity keys changes no device list.
		before = position(t, k, storage.StreamDeviceLists)
		if err := a.DeleteDevices(ctx, "bob", []string{"B1"}, ""); err != nil {
			t.Fatal(err)
		}
		if p := position(t, k, storage.StreamDeviceLists); p != before {
			t.Fatalf("deleting a keyless device moved the stream %d → %d", before, p)
		}
		// Deactivation drops every device's keys.
		if err := a.Deactivate(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if dks, _ := k.DeviceKeys(ctx, "alice", nil); len(dks) != 0 {
			t.Fatalf("keys after deactivation: %+v", dks)
		}
	})
}

func TestKeysCrossSigning(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db)
		a := storage.NewAccounts(db)
		master := storage.CrossSigningKey{Type: "master", PublicKey: "MPUB", JSON: []byte(`{"m":1}`)}
		ssk := storage.CrossSigningKey{Type: "self_signing", PublicKey: "SPUB", JSON: []byte(`{"s":1}`)}
		always := func(map[string]storage.CrossSigningKey) (bool, error) { return true, nil }

		// The first upload needs no auth.
		pos, err := k.UploadCrossSigningKeys(ctx, "alice", []storage.CrossSigningKey{master, ssk}, "", always)
		if err != nil || pos == 0 {
			t.Fatalf("first upload: %d %v", pos, err)
		}
		stored, err := k.CrossSigningKeys(ctx, "alice")
		if err != nil || len(stored) != 2 || stored["master"].PublicKey != "MPUB" || string(stored["self_signing"].JSON) != `{"s":1}` {
			t.Fatalf("stored: %+v %v", stored, err)
		}
		// The same keys again: no auth, no change.
		var seen map[string]storage.CrossSigningKey
		pos, err = k.UploadCrossSigningKeys(ctx, "alice", []storage.CrossSigningKey{master}, "", func(s map[string]storage.CrossSigningKey) (bool, error) {
			seen = s
			return false, nil
		})
		if err != nil || pos != 0 || len(seen) != 2 {
			t.Fatalf("idempotent upload: %d %v (check saw %d keys)", pos, err, len(seen))
		}
		// A change with a master key stored needs a UIA session.
		newMaster := storage.CrossSigningKey{Type: "master", PublicKey: "M2", JSON: []byte(`{"m":2}`)}
		if _, err := k.UploadCrossSigningKeys(ctx, "alice", []storage.CrossSigningKey{newMaster}, "", always); !errors.Is(err, storage.ErrAuthRequired) {
			t.Fatalf("change without auth: %v", err)
		}
		// An unknown session is refused and nothing changes.
		if _, err := k.UploadCrossSigningKeys(ctx, "alice", []storage.CrossSigningKey{newMaster}, "nosuch", always); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown session: %v", err)
		}
		if err := a.CreateUIASession(ctx, storage.UIASession{ID: "sess", Kind: "device_signing", Localpart: "alice", ExpiresTS: 1 << 50}, 0); err != nil {
			t.Fatal(err)
		}
		// The check's error aborts before the session is consumed.
		boom := errors.New("bad signature")
		if _, err := k.UploadCrossSigningKeys(ctx, "alice", []storage.CrossSigningKey{newMaster}, "sess",
			func(map[string]storage.CrossSigningKey) (bool, error) { return false, boom }); !errors.Is(err, boom) {
			t.Fatalf("check error: %v", err)
		}
		if pos, err = k.UploadCrossSigningKeys(ctx, "alice", []storage.CrossSigningKey{newMaster}, "sess", always); err != nil || pos == 0 {
			t.Fatalf("change with auth: %d %v", pos, err)
		}
		if _, err := a.UIASession(ctx, "sess"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("session not consumed: %v", err)
		}
		if stored, _ := k.CrossSigningKeys(ctx, "alice"); stored["master"].PublicKey != "M2" || stored["self_signing"].PublicKey != "SPUB" {
			t.Fatalf("after replacement: %+v", stored)
		}
		// A public key equal to a device ID is refused.
		_, err = k.UploadCrossSigningKeys(ctx, "bob", []storage.CrossSigningKey{{Type: "master", PublicKey: "B1", JSON: []byte(`{}`)}}, "", always)
		var kc *storage.KeyConflict
		if !errors.As(err, &kc) || kc.Kind != "key_id" {
			t.Fatalf("key ID in use: %v", err)
		}
		if stored, _ := k.CrossSigningKeys(ctx, "bob"); len(stored) != 0 {
			t.Fatalf("refused upload stored %+v", stored)
		}
	})
}

func TestKeysSignaturesAndDeviceLists(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db)
		p0 := position(t, k, storage.StreamDeviceLists)
		pos, err := k.AddSignatures(ctx, []storage.Signature{
			{TargetLocalpart: "alice", TargetKeyID: "A1", SignerUserID: "@alice:hs", SignerKeyID: "ed25519:S", Signature: "one"},
			{TargetLocalpart: "bob", TargetKeyID: "BM", SignerUserID: "@alice:hs", SignerKeyID: "ed25519:U", Signature: "two"},
		})
		if err != nil || pos != p0+1 {
			t.Fatalf("add signatures: %d %v", pos, err)
		}
		// The same signer key again replaces the signature.
		if _, err := k.AddSignatures(ctx, []storage.Signature{{TargetLocalpart: "alice", TargetKeyID: "A1", SignerUserID: "@alice:hs", SignerKeyID: "ed25519:S", Signature: "three"}}); err != nil {
			t.Fatal(err)
		}
		sigs, err := k.Signatures(ctx, "alice", nil)
		if err != nil || len(sigs) != 1 || sigs[0].Signature != "three" || sigs[0].TargetKeyID != "A1" {
			t.Fatalf("alice's signatures: %+v %v", sigs, err)
		}
		if sigs, _ := k.Signatures(ctx, "bob", []string{"BM", "other"}); len(sigs) != 1 || sigs[0].SignerKeyID != "ed25519:U" {
			t.Fatalf("bob's signatures: %+v", sigs)
		}
		for _, tc := range []struct {
			since, upTo int64
			want        []string
		}{
			{p0, p0 + 1, []string{"alice", "bob"}},
			{p0 + 1, p0 + 2, []string{"alice"}},
			{p0, p0 + 2, []string{"alice", "bob"}},
			{p0 + 2, p0 + 2, nil},
			{p0 + 2, p0 + 1, nil},
		} {
			got, err := k.DeviceListChanges(ctx, tc.since, tc.upTo)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("changes (%d, %d]: %v %v, want %v", tc.since, tc.upTo, got, err, tc.want)
			}
		}
	})
}

func TestKeysRoomSharing(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		syncFixture(t, db)
		k := storage.NewKeys(db)
		// Room 1: @a join (2), @b join (4), @c invite (7); room 2: @b join (10).
		for _, tc := range []struct {
			user        string
			since, upTo int64
			want        []string
		}{
			{"@a:hs", 0, 10, []string{"1 @a:hs", "1 @b:hs", "1 @c:hs"}},
			{"@a:hs", 3, 10, []string{"1 @b:hs", "1 @c:hs"}},
			{"@b:hs", 5, 10, []string{"1 @c:hs", "2 @b:hs"}},
			{"@c:hs", 0, 3, []string{"1 @a:hs"}},
			{"@z:hs", 0, 10, nil},
			{"@a:hs", 10, 10, nil},
		} {
			ms, err := k.MembershipChanges(ctx, tc.user, tc.since, tc.upTo)
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%d %s", m.RoomNID, m.UserID))
			}
			slices.Sort(got)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("membership changes of %s in (%d, %d]: %v %v, want %v", tc.user, tc.since, tc.upTo, got, err, tc.want)
			}
		}
		share, err := k.SharingRoom(ctx, "@a:hs", []string{"@a:hs", "@b:hs", "@c:hs", "@z:hs"})
		if err != nil || len(share) != 2 || !share["@a:hs"] || !share["@b:hs"] {
			t.Fatalf("sharing with @a: %v %v", share, err)
		}
		if share, _ := k.SharingRoom(ctx, "@c:hs", []string{"@a:hs"}); len(share) != 0 {
			t.Fatalf("an invitee shares no room: %v", share)
		}
		members, err := k.JoinedMembers(ctx, []int64{1, 2})
		if err != nil || !slices.Equal(members, []string{"@a:hs", "@b:hs"}) {
			t.Fatalf("joined members: %v %v", members, err)
		}
		peers, err := k.RoomPeers(ctx, "@b:hs")
		slices.Sort(peers)
		if err != nil || !slices.Equal(peers, []string{"@a:hs", "@b:hs"}) {
			t.Fatalf("peers of @b: %v %v", peers, err)
		}
	})
}
