package postgres

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"myelin/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestOpenAndMigrateTwice(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	for range 2 { // a second start finds nothing to do
		db, err := Open(dsn, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.R.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 1 {
			t.Fatalf("schema_migrations has %d rows", n)
		}
		db.Close()
	}
}

func TestOpenRefusesUnreachableServer(t *testing.T) {
	if _, err := Open("host=127.0.0.1 port=1 user=x dbname=x sslmode=disable connect_timeout=2", 1); err == nil {
		t.Fatal("opened a database on a closed port")
	}
}

func TestOpenDurability(t *testing.T) {
	dsn := pgtest.DSN(t)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"default commits synchronously", Options{}, "on"},
		{"relaxed turns synchronous_commit off", Options{Relaxed: true}, "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := OpenWith(dsn, 2, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var got string
			if err := db.W.QueryRowContext(context.Background(), "SHOW synchronous_commit").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("synchronous_commit = %s, want %s", got, tc.want)
			}
		})
	}
}

// TxRederivable relaxes only its own transaction's commit.
func TestTxRederivable(t *testing.T) {
	db, err := OpenWith(pgtest.DSN(t), 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var inside, after string
	if err := db.TxRederivable(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&inside)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.W.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if inside != "off" || after != "on" {
		t.Errorf("synchronous_commit inside %s, after %s; want off, on", inside, after)
	}
}
