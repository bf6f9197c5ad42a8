package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"myelin/storage"
)

func TestToDeviceInbox(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db) // alice: A1, A2; bob: B1
		send := func(txn string, ts int64, msgs ...storage.ToDeviceRecipient) (int64, []string, bool) {
			t.Helper()
			pos, rcpt, dup, err := k.SendToDevice(ctx, storage.ToDeviceSend{SenderLocalpart: "bob", SenderDevice: "B1", TxnID: txn,
				Sender: "@bob:hs", Type: "m.room_key_request", Messages: msgs, TS: ts, PruneBefore: ts - 100})
			if err != nil {
				t.Fatalf("send %s: %v", txn, err)
			}
			return pos, rcpt, dup
		}
		// "*" reaches both of alice's devices; the explicit A2 entry wins
		// over "*" for A2; an unknown device gets nothing.
		pos, rcpt, dup := send("t1", 1000,
			storage.ToDeviceRecipient{Localpart: "alice", DeviceID: "*", Content: []byte(`{"n":"all"}`)},
			storage.ToDeviceRecipient{Localpart: "alice", DeviceID: "A2", Content: []byte(`{"n":"a2"}`)},
			storage.ToDeviceRecipient{Localpart: "bob", DeviceID: "NOPE", Content: []byte(`{"n":"lost"}`)})
		if pos != 2 || dup || !slices.Equal(rcpt, []string{"alice"}) {
			t.Fatalf("first send: pos %d recipients %v dup %v", pos, rcpt, dup)
		}
		if p := position(t, k, storage.StreamToDevice); p != 2 {
			t.Fatalf("stream position %d", p)
		}
		// A retry of the same transaction stores nothing.
		if pos, rcpt, dup := send("t1", 1001, storage.ToDeviceRecipient{Localpart: "alice", DeviceID: "A1", Content: []byte(`{"n":"again"}`)}); pos != 0 || !dup || rcpt != nil {
			t.Fatalf("retry: pos %d recipients %v dup %v", pos, rcpt, dup)
		}
		// Nobody to deliver to: no position used.
		if pos, _, dup := send("t2", 1002, storage.ToDeviceRecipient{Localpart: "carol", DeviceID: "*", Content: []byte(`{}`)}); pos != 0 || dup {
			t.Fatalf("send to nobody: pos %d dup %v", pos, dup)
		}
		for i := range 3 {
			send(fmt.Sprintf("m%d", i), 1003, storage.ToDeviceRecipient{Localpart: "alice", DeviceID: "A1", Content: []byte(fmt.Sprintf(`{"i":%d}`, i))})
		}
		// A1 has positions 1, 3, 4, 5; A2 has 2.
		contents := func(evs []storage.ToDeviceEvent) []string {
			var out []string
			for _, e := range evs {
				if e.Sender != "@bob:hs" || e.Type != "m.room_key_request" {
					t.Fatalf("event %+v", e)
				}
				out = append(out, fmt.Sprintf("%d %s", e.Pos, e.Content))
			}
			return out
		}
		for _, tc := range []struct {
			device      string
			since, upTo int64
			limit       int
			want        []string
			more        bool
		}{
			{"A1", 0, 5, 10, []string{`1 {"n":"all"}`, `3 {"i":0}`, `4 {"i":1}`, `5 {"i":2}`}, false},
			{"A1", 0, 5, 2, []string{`1 {"n":"all"}`, `3 {"i":0}`}, true},
			{"A1", 3, 5, 2, []string{`4 {"i":1}`, `5 {"i":2}`}, false},
			{"A1", 0, 3, 10, []string{`1 {"n":"all"}`, `3 {"i":0}`}, false},
			{"A2", 0, 5, 10, []string{`2 {"n":"a2"}`}, false},
			{"A2", 2, 5, 10, nil, false},
			{"A1", 5, 5, 10, nil, false},
		} {
			evs, more, err := k.PendingToDevice(ctx, "alice", tc.device, tc.since, tc.upTo, tc.limit)
			if got := contents(evs); err != nil || !slices.Equal(got, tc.want) || more != tc.more {
				t.Errorf("%s (%d, %d] limit %d: %v more=%v %v, want %v more=%v", tc.device, tc.since, tc.upTo, tc.limit, got, more, err, tc.want, tc.more)
			}
		}
		// Acknowledging deletes up to the position, for that device only.
		if n, err := k.AckToDevice(ctx, "alice", "A1", 3); err != nil || n != 2 {
			t.Fatalf("ack A1 ≤ 3: %d %v", n, err)
		}
		if n, err := k.AckToDevice(ctx, "alice", "A1", 3); err != nil || n != 0 {
			t.Fatalf("ack again: %d %v", n, err)
		}
		if evs, _, _ := k.PendingToDevice(ctx, "alice", "A1", 0, 5, 10); !slices.Equal(contents(evs), []string{`4 {"i":1}`, `5 {"i":2}`}) {
			t.Fatalf("A1 after ack: %v", contents(evs))
		}
		if evs, _, _ := k.PendingToDevice(ctx, "alice", "A2", 0, 5, 10); len(evs) != 1 {
			t.Fatalf("A2 lost its message to A1's ack: %v", contents(evs))
		}
		// Old transaction IDs are pruned: t1, recorded at 1000, is usable
		// again once a later send prunes before 1001.
		if _, _, dup := send("t1", 1101, storage.ToDeviceRecipient{Localpart: "alice", DeviceID: "A1", Content: []byte(`{}`)}); dup {
			t.Fatal("pruned transaction ID still deduplicated")
		}
	})
}

func TestKeyBackup(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		k := keysFixture(t, db)
		const alg = "m.megolm_backup.v1.curve25519-aes-sha2"
		if _, err := k.BackupVersion(ctx, "alice", 0); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("no backup yet: %v", err)
		}
		if _, _, err := k.PutBackupKeys(ctx, "alice", 1, nil); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("keys without a backup: %v", err)
		}
		v1, err := k.CreateBackupVersion(ctx, "alice", alg, []byte(`{"public_key":"one"}`))
		if err != nil || v1 != 1 {
			t.Fatalf("create: %d %v", v1, err)
		}
		v2, _ := k.CreateBackupVersion(ctx, "alice", alg, []byte(`{"public_key":"two"}`))
		if v2 != 2 {
			t.Fatalf("second version %d", v2)
		}
		if v, _ := k.CreateBackupVersion(ctx, "bob", alg, []byte(`{}`)); v != 1 {
			t.Fatalf("bob's first version %d (versions count per user)", v)
		}
		cur, err := k.BackupVersion(ctx, "alice", 0)
		if err != nil || cur.Version != 2 || cur.Algorithm != alg || string(cur.AuthData) != `{"public_key":"two"}` || cur.Count != 0 {
			t.Fatalf("current: %+v %v", cur, err)
		}
		// Writes go to the current version only.
		var wrong *storage.WrongBackupVersion
		if _, _, err := k.PutBackupKeys(ctx, "alice", 1, nil); !errors.As(err, &wrong) || wrong.Current != 2 {
			t.Fatalf("write to an old version: %v", err)
		}
		key := func(room, session string, verified bool, fmi, fc int64, data string) storage.BackupKey {
			return storage.BackupKey{RoomID: room, SessionID: session, IsVerified: verified, FirstMessageIndex: fmi, ForwardedCount: fc, SessionData: []byte(data)}
		}
		etag, count, err := k.PutBackupKeys(ctx, "alice", 2, []storage.BackupKey{key("!r:hs", "s1", false, 5, 1, `{"d":"base"}`), key("!r:hs", "s2", false, 0, 0, `{"d":"x"}`)})
		if err != nil || etag != 1 || count != 2 {
			t.Fatalf("put: etag %d count %d %v", etag, count, err)
		}
		// The spec's preference rules, each against the stored
		// (unverified, index 5, forwarded 1) key of s1.
		for _, tc := range []struct {
			name     string
			key      storage.BackupKey
			replaces bool
		}{
			{"verified beats unverified", key("!r:hs", "s1", true, 9, 9, `{"d":"verified"}`), true},
			{"unverified loses to verified", key("!r:hs", "s1", false, 0, 0, `{"d":"unverified"}`), false},
			{"lower index wins", key("!r:hs", "s1", true, 3, 9, `{"d":"index3"}`), true},
			{"higher index loses", key("!r:hs", "s1", true, 4, 0, `{"d":"index4"}`), false},
			{"lower forwarded count wins", key("!r:hs", "s1", true, 3, 2, `{"d":"fc2"}`), true},
			{"equal keeps the stored", key("!r:hs", "s1", true, 3, 2, `{"d":"same"}`), false},
		} {
			before, _ := k.BackupKeys(ctx, "alice", 2, "!r:hs", "s1")
			etagBefore, _ := k.BackupVersion(ctx, "alice", 2)
			etag, _, err := k.PutBackupKeys(ctx, "alice", 2, []storage.BackupKey{tc.key})
			after, _ := k.BackupKeys(ctx, "alice", 2, "!r:hs", "s1")
			if err != nil || len(after) != 1 {
				t.Fatalf("%s: %v %v", tc.name, after, err)
			}
			if replaced := string(after[0].SessionData) == string(tc.key.SessionData); replaced != tc.replaces {
				t.Errorf("%s: stored %s (was %s)", tc.name, after[0].SessionData, before[0].SessionData)
			}
			if (etag != etagBefore.Etag) != tc.replaces {
				t.Errorf("%s: etag %d → %d", tc.name, etagBefore.Etag, etag)
			}
		}
		if _, _, err := k.PutBackupKeys(ctx, "alice", 2, []storage.BackupKey{key("!q:hs", "s9", false, 0, 0, `{}`)}); err != nil {
			t.Fatal(err)
		}
		all, err := k.BackupKeys(ctx, "alice", 2, "", "")
		if err != nil || len(all) != 3 || all[0].RoomID != "!q:hs" || all[1].SessionID != "s1" || !all[1].IsVerified || all[1].FirstMessageIndex != 3 || all[1].ForwardedCount != 2 {
			t.Fatalf("all keys: %+v %v", all, err)
		}
		if room, _ := k.BackupKeys(ctx, "alice", 2, "!r:hs", ""); len(room) != 2 {
			t.Fatalf("room keys: %+v", room)
		}
		if none, err := k.BackupKeys(ctx, "alice", 2, "!r:hs", "nope"); err != nil || len(none) != 0 {
			t.Fatalf("missing session: %+v %v", none, err)
		}
		if _, err := k.BackupKeys(ctx, "alice", 7, "", ""); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("keys of an unknown version: %v", err)
		}
		// Old versions stay readable.
		if old, err := k.BackupKeys(ctx, "alice", 1, "", ""); err != nil || len(old) != 0 {
			t.Fatalf("old version: %+v %v", old, err)
		}

		// Deleting keys: one session, then a room.
		v, _ := k.BackupVersion(ctx, "alice", 2)
		etag, count, err = k.DeleteBackupKeys(ctx, "alice", 2, "!r:hs", "s2")
		if err != nil || count != 2 || etag != v.Etag+1 {
			t.Fatalf("delete session: etag %d count %d %v (etag was %d)", etag, count, err, v.Etag)
		}
		if _, count, _ := k.DeleteBackupKeys(ctx, "alice", 2, "!r:hs", ""); count != 1 {
			t.Fatalf("delete room: count %d", count)
		}
		// Nothing deleted: etag unchanged.
		if e2, _, _ := k.DeleteBackupKeys(ctx, "alice", 2, "!none:hs", ""); e2 != etag+1 {
			t.Fatalf("empty delete moved the etag to %d", e2)
		}

		// auth_data updates keep the algorithm.
		if err := k.UpdateBackupVersion(ctx, "alice", 2, "other.algorithm", []byte(`{}`)); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("update with another algorithm: %v", err)
		}
		if err := k.UpdateBackupVersion(ctx, "alice", 2, alg, []byte(`{"public_key":"two","x":1}`)); err != nil {
			t.Fatal(err)
		}
		if v, _ := k.BackupVersion(ctx, "alice", 2); string(v.AuthData) != `{"public_key":"two","x":1}` {
			t.Fatalf("auth data %s", v.AuthData)
		}
		if err := k.UpdateBackupVersion(ctx, "alice", 9, alg, []byte(`{}`)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("update unknown: %v", err)
		}

		// Deleting the current version makes the previous one current; a
		// deleted version is gone for reads and writes but deleting it
		// again succeeds; its number is never reused.
		if err := k.DeleteBackupVersion(ctx, "alice", 2); err != nil {
			t.Fatal(err)
		}
		if err := k.DeleteBackupVersion(ctx, "alice", 2); err != nil {
			t.Fatalf("second delete: %v", err)
		}
		if err := k.DeleteBackupVersion(ctx, "alice", 5); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("delete unknown: %v", err)
		}
		if cur, _ := k.BackupVersion(ctx, "alice", 0); cur.Version != 1 {
			t.Fatalf("current after delete: %+v", cur)
		}
		for name, err := range map[string]error{
			"read":   func() error { _, err := k.BackupVersion(ctx, "alice", 2); return err }(),
			"keys":   func() error { _, err := k.BackupKeys(ctx, "alice", 2, "", ""); return err }(),
			"delete": func() error { _, _, err := k.DeleteBackupKeys(ctx, "alice", 2, "", ""); return err }(),
			"update": k.UpdateBackupVersion(ctx, "alice", 2, alg, []byte(`{}`)),
		} {
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s of a deleted version: %v", name, err)
			}
		}
		if v3, _ := k.CreateBackupVersion(ctx, "alice", alg, []byte(`{}`)); v3 != 3 {
			t.Fatalf("next version %d, want 3", v3)
		}
	})
}
