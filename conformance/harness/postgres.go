package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// PostgresBin is where Debian's PostgreSQL 15 binaries live (the root
// Makefile's scripts/ensure-postgres.sh installs them).
const PostgresBin = "/usr/lib/postgresql/15/bin"

// Postgres is a PostgreSQL server the deployer creates one database per
// Myelin server on.
type Postgres struct {
	// DSN is the maintenance database's DSN.
	DSN string
	// Bin holds createdb and dropdb.
	Bin  string
	stop func()
}

// Stop shuts down a cluster StartPostgres started; a no-op for an external
// server.
func (p *Postgres) Stop() {
	if p.stop != nil {
		p.stop()
	}
}

// Env is what the deployer in the test binaries reads.
func (p *Postgres) Env() []string {
	return []string{"MYELIN_CONFORMANCE_POSTGRES=" + p.DSN, "MYELIN_CONFORMANCE_POSTGRES_BIN=" + p.Bin}
}

// StartPostgres returns the PostgreSQL server named by MYELIN_TEST_POSTGRES
// (the variable Myelin's own tests use), or starts a throwaway cluster with
// initdb and pg_ctl in a temp directory on a free port. As root, the server
// runs as the "postgres" user, since PostgreSQL refuses to run as root.
func (h *Harness) StartPostgres() (*Postgres, error) {
	if dsn := os.Getenv("MYELIN_TEST_POSTGRES"); dsn != "" {
		return &Postgres{DSN: dsn, Bin: PostgresBin}, nil
	}
	if _, err := os.Stat(filepath.Join(PostgresBin, "initdb")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 not found in %s (scripts/ensure-postgres.sh installs it): %w", PostgresBin, err)
	}
	tmp, err := os.MkdirTemp("", "myelin-conformance-pg-")
	if err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	asPostgres := func(name string, args ...string) *exec.Cmd {
		path := filepath.Join(PostgresBin, name)
		if os.Geteuid() == 0 {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
		}
		return exec.Command(path, args...)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:postgres", tmp).CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("chown cluster dir: %w: %s", err, out)
		}
	}
	data := filepath.Join(tmp, "data")
	if out, err := asPostgres("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	// fsync off: the conformance run tests behaviour, not durability, and
	// every deployment creates databases.
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=300", port, tmp)
	start := time.Now()
	if out, err := asPostgres("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(tmp, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	h.logf("started PostgreSQL on 127.0.0.1:%d in %v", port, time.Since(start).Round(100*time.Millisecond))
	return &Postgres{
		DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		Bin: PostgresBin,
		stop: func() {
			asPostgres("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()
			os.RemoveAll(tmp)
		},
	}, nil
}
