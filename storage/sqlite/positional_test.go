package sqlite

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPositional(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no parameters", "SELECT 1", "SELECT 1"},
		{"in order", "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)", "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"},
		{"ten and more", "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)", "VALUES (?,?,?,?,?,?,?,?,?,?,?)"},
		{"reused", "SELECT $1 WHERE x = $1", "SELECT $1 WHERE x = $1"},
		{"out of order", "SELECT $2, $1", "SELECT $2, $1"},
		{"gap", "SELECT $1, $3", "SELECT $1, $3"},
		{"starts above one", "SELECT $2", "SELECT $2"},
		{"dollar in a literal", "SELECT '$1', $1", "SELECT '$1', ?"},
		{"escaped quote in a literal", "SELECT 'it''s $2', $1", "SELECT 'it''s $2', ?"},
		{"dollar in an identifier", `SELECT "a$1" FROM t WHERE x = $1`, `SELECT "a$1" FROM t WHERE x = ?`},
		{"dollar in a line comment", "SELECT $1 -- not $5\nFROM t", "SELECT ? -- not $5\nFROM t"},
		{"dollar in a block comment", "SELECT /* $7 */ $1", "SELECT /* $7 */ ?"},
		{"unterminated literal", "SELECT '$1", "SELECT '$1"},
		{"bare dollar", "SELECT $ FROM t", "SELECT $ FROM t"},
		{"named parameter", "SELECT $name", "SELECT $name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := positional(tc.in); got != tc.want {
				t.Errorf("positional(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// The rewrite must not change what a statement means: numbered, reused and
// rewritten parameters bind the same values.
func TestPositionalBindsTheSameValues(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		query string
		args  []any
		want  string
	}{
		{"SELECT $1 || $2 || $3", []any{"a", "b", "c"}, "abc"},
		{"SELECT $2 || $1", []any{"a", "b"}, "ba"},
		{"SELECT $1 || $1 || $2", []any{"a", "b"}, "aab"},
		{"SELECT '$1' || $1", []any{"x"}, "$1x"},
	} {
		var got string
		if err := db.R.QueryRowContext(ctx, tc.query, tc.args...).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.query, got, tc.want)
		}
	}
	if _, err := db.W.ExecContext(ctx, "CREATE TABLE t (a INTEGER, b TEXT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.ExecContext(ctx, "INSERT INTO t VALUES ($1, $2), ($3, $4)", 1, "one", 2, "two"); err != nil {
		t.Fatal(err)
	}
	var b string
	if err := db.W.QueryRowContext(ctx, "SELECT b FROM t WHERE a = $1", 2).Scan(&b); err != nil || b != "two" {
		t.Fatalf("b = %q, %v; want two", b, err)
	}
}

func BenchmarkBindManyParameters(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "x.db"), 1)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	args := make([]any, 400)
	for i := range args {
		args[i] = int64(i)
	}
	q := "SELECT COUNT(*) FROM (SELECT 1 AS x) WHERE x IN (" + placeholderList(len(args)) + ")"
	for b.Loop() {
		var n int
		if err := db.R.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
}

func placeholderList(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i))
	}
	return b.String()
}
