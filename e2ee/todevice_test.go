package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"myelin/internal/apierr"
)

func TestSendToDevice(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		bob := e.newDevice("bob", "B1")
		a1, a2 := e.newDevice("alice", "A1"), e.newDevice("alice", "A2")
		carol := e.newDevice("carol", "C1")
		inbox := e.svc.ToDeviceInbox()
		if inbox.StreamKey() != "d" || e.svc.DeviceLists().StreamKey() != "k" {
			t.Fatal("stream keys changed: existing sync tokens would break")
		}
		msgs := func(kv ...any) map[string]map[string]json.RawMessage {
			out := map[string]map[string]json.RawMessage{}
			for i := 0; i < len(kv); i += 3 {
				u, d := kv[i].(string), kv[i+1].(string)
				if out[u] == nil {
					out[u] = map[string]json.RawMessage{}
				}
				out[u][d] = json.RawMessage(kv[i+2].(string))
			}
			return out
		}
		// Refused requests queue nothing.
		for _, tc := range []struct {
			name, typ, txn string
			m              map[string]map[string]json.RawMessage
			status         int
			code           string
		}{
			{"empty type", "", "t", msgs(a1.userID, "*", `{}`), 400, "M_INVALID_PARAM"},
			{"content not an object", "m.test", "t", msgs(a1.userID, "A1", `[1]`), 400, "M_BAD_JSON"},
			{"not a user ID", "m.test", "t", msgs("alice", "A1", `{}`), 400, "M_INVALID_PARAM"},
			{"empty device ID", "m.test", "t", msgs(a1.userID, "", `{}`), 400, "M_INVALID_PARAM"},
		} {
			err := e.svc.SendToDevice(ctx, bob.id(), tc.typ, tc.txn, tc.m)
			wantCode(t, tc.name, err, tc.status, tc.code)
		}
		if p := inbox.StreamPosition(); p != 0 {
			t.Fatalf("refused sends moved the stream to %d", p)
		}

		// "*" reaches each of alice's devices; carol gets her own content; a
		// remote recipient is dropped; the recipients are woken.
		e.takeWoken()
		if err := e.svc.SendToDevice(ctx, bob.id(), "m.room_key", "txn1", msgs(
			a1.userID, "*", `{"to": "all"}`, carol.userID, "C1", `{"to":"carol"}`, "@dan:remote.example", "X", `{}`)); err != nil {
			t.Fatal(err)
		}
		if w := e.takeWoken(); !slices.Equal(w, []string{a1.userID, carol.userID}) {
			t.Fatalf("woken %v", w)
		}
		// The same transaction again queues nothing and wakes nobody.
		if err := e.svc.SendToDevice(ctx, bob.id(), "m.room_key", "txn1", msgs(a1.userID, "A1", `{"to":"again"}`)); err != nil {
			t.Fatal(err)
		}
		if w := e.takeWoken(); len(w) != 0 {
			t.Fatalf("a retried transaction woke %v", w)
		}
		upTo := inbox.StreamPosition()
		if upTo != 3 {
			t.Fatalf("position %d, want 3 (three recipient devices)", upTo)
		}
		read := func(d *device, since, upTo int64, limit int) ([]string, int64) {
			t.Helper()
			evs, next, err := inbox.ToDevice(ctx, d.userID, d.deviceID, since, upTo, limit)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, ev := range evs {
				out = append(out, string(ev))
			}
			return out, next
		}
		want := fmt.Sprintf(`{"sender":%q,"type":"m.room_key","content":{"to":"all"}}`, bob.userID)
		for _, d := range []*device{a1, a2} {
			if got, next := read(d, 0, upTo, 100); !slices.Equal(got, []string{want}) || next != upTo {
				t.Fatalf("%s: %v next %d", d.deviceID, got, next)
			}
		}
		// Until a sync from a later token proves delivery, the messages
		// stay (a lost response is retried with the old token); after it,
		// they are gone.
		if got, _ := read(a1, 0, upTo, 100); len(got) != 1 {
			t.Fatalf("redelivery before acknowledgement: %v", got)
		}
		if got, next := read(a1, upTo, upTo, 100); len(got) != 0 || next != upTo {
			t.Fatalf("acknowledging sync: %v %d", got, next)
		}
		if got, _ := read(a1, 0, upTo, 100); len(got) != 0 {
			t.Fatalf("acknowledged message delivered again: %v", got)
		}
		if got, _ := read(a2, 0, upTo, 100); len(got) != 1 {
			t.Fatalf("A1's acknowledgement removed A2's message: %v", got)
		}

		// Limits: the next position is the last one delivered.
		for i := range 3 {
			if err := e.svc.SendToDevice(ctx, bob.id(), "m.test", fmt.Sprintf("n%d", i), msgs(a1.userID, "A1", fmt.Sprintf(`{"i":%d}`, i))); err != nil {
				t.Fatal(err)
			}
		}
		upTo = inbox.StreamPosition()
		got, next := read(a1, 3, upTo, 2)
		if len(got) != 2 || next != upTo-1 {
			t.Fatalf("limited read: %v next %d (upTo %d)", got, next, upTo)
		}
		got, next = read(a1, next, upTo, 2)
		if len(got) != 1 || next != upTo || got[0] != fmt.Sprintf(`{"sender":%q,"type":"m.test","content":{"i":2}}`, bob.userID) {
			t.Fatalf("rest: %v next %d", got, next)
		}

		// Messages survive a restart of the service until acknowledged.
		again, err := New(Options{DB: e.db, ServerName: server})
		if err != nil {
			t.Fatal(err)
		}
		if again.ToDeviceInbox().StreamPosition() != upTo {
			t.Fatal("position lost across a restart")
		}
		if evs, _, _ := again.ToDeviceInbox().ToDevice(ctx, carol.userID, "C1", 0, upTo, 100); len(evs) != 1 {
			t.Fatalf("carol's message after a restart: %s", evs)
		}
		// A since beyond the stream (a token from a restored database)
		// acknowledges only what exists up to the stream's position.
		if evs, next, _ := again.ToDeviceInbox().ToDevice(ctx, carol.userID, "C1", upTo+50, upTo, 100); len(evs) != 0 || next != upTo {
			t.Fatalf("future since: %s %d", evs, next)
		}
	})
}

func TestKeyBackupRules(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.newDevice("alice", "A1")
		auth := json.RawMessage(fmt.Sprintf(`{"public_key":%q,"signatures":{}}`, randomKey()))
		for _, tc := range []struct {
			name, alg string
			auth      json.RawMessage
			code      string
		}{
			{"empty algorithm", "", auth, "M_INVALID_PARAM"},
			{"unknown algorithm, auth_data not an object", "m.megolm_backup.v2", json.RawMessage(`[1]`), "M_BAD_JSON"},
			{"auth_data not an object", BackupAlgorithm, json.RawMessage(`"x"`), "M_BAD_JSON"},
			{"no public key", BackupAlgorithm, json.RawMessage(`{}`), "M_INVALID_PARAM"},
			{"short public key", BackupAlgorithm, json.RawMessage(`{"public_key":"abc"}`), "M_INVALID_PARAM"},
		} {
			_, err := e.svc.CreateBackup(ctx, alice.userID, tc.alg, tc.auth)
			wantCode(t, tc.name, err, 400, tc.code)
		}
		_, err := e.svc.Backup(ctx, alice.userID, "")
		wantCode(t, "no backup", err, 404, "M_NOT_FOUND")
		// An algorithm the spec does not list yet is stored opaquely.
		if v, err := e.svc.CreateBackup(ctx, alice.userID, "org.example.backup.v2", json.RawMessage(`{"foo":"bar"}`)); err != nil || v != "1" {
			t.Fatalf("opaque algorithm: %q %v", v, err)
		}
		if info, err := e.svc.Backup(ctx, alice.userID, "1"); err != nil || info.Algorithm != "org.example.backup.v2" || string(info.AuthData) != `{"foo":"bar"}` {
			t.Fatalf("opaque algorithm read back: %+v %v", info, err)
		}
		// Clients serialise an empty signature map as null.
		v1, err := e.svc.CreateBackup(ctx, alice.userID, BackupAlgorithm, json.RawMessage(fmt.Sprintf(`{"public_key":%q,"signatures":null}`, randomKey())))
		if err != nil || v1 != "2" {
			t.Fatalf("create: %q %v", v1, err)
		}
		v2, _ := e.svc.CreateBackup(ctx, alice.userID, BackupAlgorithm, auth)
		info, err := e.svc.Backup(ctx, alice.userID, "")
		if err != nil || info.Version != v2 || info.Etag != "0" || info.Count != 0 || info.Algorithm != BackupAlgorithm {
			t.Fatalf("current: %+v %v", info, err)
		}
		for _, v := range []string{"abc", "01", "-1", "0", "99"} {
			_, err := e.svc.Backup(ctx, alice.userID, v)
			wantCode(t, "version "+v, err, 404, "M_NOT_FOUND")
		}
		i64 := func(n int64) *int64 { return &n }
		yes := true
		key := KeyBackupData{FirstMessageIndex: i64(0), ForwardedCount: i64(0), IsVerified: &yes, SessionData: json.RawMessage(`{"ciphertext":"c"}`)}
		put := func(version string, k KeyBackupData) (*BackupUpdate, error) {
			return e.svc.PutBackupKeys(ctx, alice.userID, version, map[string]RoomKeyBackup{"!room:" + server: {Sessions: map[string]KeyBackupData{"sess": k}}})
		}
		// Writing to an old version names the current one.
		_, err = put(v1, key)
		wantCode(t, "old version", err, 403, "M_WRONG_ROOM_KEYS_VERSION")
		if ae, _ := apierr.As(err); ae.Extra["current_version"] != v2 {
			t.Fatalf("current_version: %v", ae.Extra)
		}
		_, err = put("garbage", key)
		wantCode(t, "garbage version", err, 403, "M_WRONG_ROOM_KEYS_VERSION")
		_, err = put("", key)
		wantCode(t, "no version", err, 400, "M_MISSING_PARAM")
		for name, k := range map[string]KeyBackupData{
			"no session_data":  {FirstMessageIndex: i64(0), ForwardedCount: i64(0), IsVerified: &yes},
			"no is_verified":   {FirstMessageIndex: i64(0), ForwardedCount: i64(0), SessionData: key.SessionData},
			"session_data [1]": {FirstMessageIndex: i64(0), ForwardedCount: i64(0), IsVerified: &yes, SessionData: json.RawMessage(`[1]`)},
		} {
			_, err := put(v2, k)
			wantCode(t, name, err, 400, "M_BAD_JSON")
		}
		_, err = put(v2, KeyBackupData{FirstMessageIndex: i64(-1), ForwardedCount: i64(0), IsVerified: &yes, SessionData: key.SessionData})
		wantCode(t, "negative index", err, 400, "M_INVALID_PARAM")
		_, err = e.svc.PutBackupKeys(ctx, alice.userID, v2, map[string]RoomKeyBackup{"room": {Sessions: map[string]KeyBackupData{}}})
		wantCode(t, "bad room ID", err, 400, "M_INVALID_PARAM")
		up, err := put(v2, key)
		if err != nil || up.Count != 1 || up.Etag != "1" {
			t.Fatalf("put: %+v %v", up, err)
		}
		got, err := e.svc.BackupKeys(ctx, alice.userID, v2, "!room:"+server, "sess")
		if kd, ok := got.(KeyBackupData); err != nil || !ok || !*kd.IsVerified || string(kd.SessionData) != `{"ciphertext":"c"}` {
			t.Fatalf("get session: %+v %v", got, err)
		}
		_, err = e.svc.BackupKeys(ctx, alice.userID, v2, "!room:"+server, "other")
		wantCode(t, "missing session", err, 404, "M_NOT_FOUND")
		if r, err := e.svc.BackupKeys(ctx, alice.userID, v2, "!empty:"+server, ""); err != nil || len(r.(RoomKeyBackup).Sessions) != 0 {
			t.Fatalf("empty room: %+v %v", r, err)
		}
		err = e.svc.UpdateBackup(ctx, alice.userID, v2, v1, BackupAlgorithm, auth)
		wantCode(t, "body version differs", err, 400, "M_INVALID_PARAM")
		if err := e.svc.DeleteBackup(ctx, alice.userID, v2); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.DeleteBackup(ctx, alice.userID, v2); err != nil {
			t.Fatalf("deleting again: %v", err)
		}
		err = e.svc.DeleteBackup(ctx, alice.userID, "7")
		wantCode(t, "delete unknown", err, 404, "M_NOT_FOUND")
		if info, _ := e.svc.Backup(ctx, alice.userID, ""); info.Version != v1 {
			t.Fatalf("current after deleting %s: %+v", v2, info)
		}
	})
}
