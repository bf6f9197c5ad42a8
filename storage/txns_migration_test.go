package storage_test

import (
	"context"
	"errors"
	"testing"

	"myelin/storage"
)

// TestTxnsByEventMigration upgrades a database of the layout before 0060
// (event_txns keyed by the transaction, with indexes by event and by time):
// stored transaction IDs still find their events both ways, still load into
// the roomserver's filter and still prune, and the transaction key stays
// unique.
func TestTxnsByEventMigration(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db := openUpTo(t, engine, 59)
			exec := func(query string) error {
				_, err := db.W.ExecContext(ctx, query)
				return err
			}
			for _, q := range []string{
				`INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, state_group, depth, last_event_nid) VALUES (7, '!r:hs', '12', '@a:hs', 0, 0, 0, 0)`,
				`INSERT INTO events (event_nid, room_nid, event_id, type, state_key, sender, depth, origin_ts, state_group, json) VALUES
					(3, 7, '$e3', 'm.room.message', NULL, '@a:hs', 3, 0, 0, '{}'), (4, 7, '$e4', 'm.room.message', NULL, '@a:hs', 4, 0, 0, '{}')`,
				`INSERT INTO event_txns (user_id, device_id, room_nid, scope, txn_id, event_nid, created_ts) VALUES
					('@a:hs', 'D', 7, 'send', 't3', 3, 100), ('@a:hs', 'D', 7, 'send', 't4', 4, 200)`,
			} {
				if err := exec(q); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			rs := storage.NewRooms(db)
			defer rs.Close()
			if id, err := rs.TxnEvent(ctx, "@a:hs", "D", 7, "send", "t4"); err != nil || id != "$e4" {
				t.Fatalf("txn t4 after upgrade: %q %v", id, err)
			}
			ids, err := rs.TxnIDsForEvents(ctx, "@a:hs", "D", []int64{3, 4})
			if err != nil || len(ids) != 2 || ids[3] != "t3" || ids[4] != "t4" {
				t.Fatalf("txn ids after upgrade: %v %v", ids, err)
			}
			var keys []string
			if err := rs.TxnKeys(ctx, func(int) {}, func(_, _ string, _ int64, _, txn string) { keys = append(keys, txn) }); err != nil || len(keys) != 2 {
				t.Fatalf("txn keys after upgrade: %v %v", keys, err)
			}
			if err := exec(`INSERT INTO event_txns (user_id, device_id, room_nid, scope, txn_id, event_nid, created_ts) VALUES ('@a:hs', 'D', 7, 'send', 't3', 5, 300)`); err == nil {
				t.Fatal("a second row for transaction t3 was accepted")
			}
			if n, err := rs.PruneTxns(ctx, 150); err != nil || n != 1 {
				t.Fatalf("prune after upgrade: %d %v", n, err)
			}
			if _, err := rs.TxnEvent(ctx, "@a:hs", "D", 7, "send", "t3"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("pruned txn t3: %v", err)
			}
		})
	}
}
