// Package pgtest is the test rig's throwaway PostgreSQL: a DSN from
// MYELIN_TEST_POSTGRES, or a private cluster made with initdb + pg_ctl in a
// temp dir on a free 127.0.0.1 port, shared by one test binary and removed at
// its end. Each caller gets its own fresh database.
//
// With CI=true a missing PostgreSQL fails the test instead of skipping it:
// CI must prove both engines.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for admin connections
	"go.uber.org/goleak"
)

// BinDir is where Debian's PostgreSQL 15 server binaries live.
const BinDir = "/usr/lib/postgresql/15/bin"

var (
	once     sync.Once
	baseDSN  string // connection to the maintenance database
	startErr error
	dataDir  string
	counter  atomic.Int64
)

// DSN returns the DSN of a new, empty database for this test. It skips the
// test when no PostgreSQL is available, unless CI=true, where it fails.
func DSN(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if startErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL required in CI: %v", startErr)
		}
		t.Skipf("PostgreSQL unavailable: %v", startErr)
	}
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), counter.Add(1))
	admin, err := sql.Open("pgx", baseDSN)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", baseDSN)
		if err != nil {
			return
		}
		defer admin.Close()
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	return withDB(baseDSN, name)
}

// Stop stops a cluster this package started; call it from TestMain after
// m.Run. It is a no-op when an external DSN was used.
func Stop() {
	if dataDir == "" {
		return
	}
	_ = exec.Command(filepath.Join(BinDir, "pg_ctl"), "-D", dataDir, "-m", "immediate", "-w", "stop").Run()
	_ = os.RemoveAll(filepath.Dir(dataDir))
}

func withDB(dsn, name string) string {
	// Both URL and key=value forms are accepted for the external DSN.
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		base, query, _ := strings.Cut(dsn, "?")
		if i := strings.LastIndex(base, "/"); i > len("postgresql://") {
			base = base[:i]
		}
		out := base + "/" + name
		if query != "" {
			out += "?" + query
		}
		return out
	}
	return dsn + " dbname=" + name
}

func start() {
	if dsn := os.Getenv("MYELIN_TEST_POSTGRES"); dsn != "" {
		baseDSN = dsn
		startErr = ping(dsn)
		return
	}
	initdb := filepath.Join(BinDir, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		startErr = fmt.Errorf("%s not found (make test installs the postgresql package)", initdb)
		return
	}
	tmp, err := os.MkdirTemp("", "myelin-pg-")
	if err != nil {
		startErr = err
		return
	}
	dir := filepath.Join(tmp, "data")
	port, err := freePort()
	if err != nil {
		startErr = err
		return
	}
	// initdb and postgres refuse to run as root; run them as the "postgres"
	// user the Debian package creates when we are root.
	asUser := func(name string, args ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
		return exec.Command(name, args...)
	}
	if os.Geteuid() == 0 {
		if err := exec.Command("chown", "-R", "postgres:postgres", tmp).Run(); err != nil {
			startErr = fmt.Errorf("chown temp dir for postgres user: %w", err)
			return
		}
	}
	if out, err := asUser(initdb, "-D", dir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		startErr = fmt.Errorf("initdb: %v: %s", err, out)
		return
	}
	// fsync stays on: the tests exercise durability as production sees it.
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c max_connections=200 -c shared_buffers=64MB", port, tmp)
	if out, err := asUser(filepath.Join(BinDir, "pg_ctl"), "-D", dir, "-o", opts, "-l", filepath.Join(tmp, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		startErr = fmt.Errorf("pg_ctl start: %v: %s", err, out)
		return
	}
	dataDir = dir
	watchParent(tmp, dir)
	baseDSN = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port)
	startErr = ping(baseDSN)
}

// watchParent stops the cluster when this test binary dies without reaching
// Stop (a go test timeout, a panic in another goroutine, a kill): a detached
// shell polls for our PID and then stops PostgreSQL and removes its files.
func watchParent(tmp, dir string) {
	pgctl := filepath.Join(BinDir, "pg_ctl")
	stop := fmt.Sprintf("%s -D %s -m immediate stop", pgctl, dir)
	if os.Geteuid() == 0 {
		stop = "runuser -u postgres -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 2; done; if [ -d %s ]; then %s >/dev/null 2>&1; rm -rf %s; fi",
		os.Getpid(), dir, stop, tmp)
	cmd := exec.Command("sh", "-c", script)
	// Its own process group, so a signal to the test's group does not take
	// the watchdog with it before it has cleaned up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Not waited for: it outlives this process by design (init reaps it),
	// and a goroutine parked in Wait would trip goroutine-leak checks.
	if err := cmd.Start(); err == nil {
		_ = cmd.Process.Release()
	}
}

func ping(dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Main runs the tests and then stops any cluster this binary started. Every
// package that uses DSN calls it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// MainNoLeaks is Main for packages that start goroutines (workers, timers,
// consumers): once the tests passed it fails the binary if any goroutine is
// still running (goleak), so a Close that forgets one is caught. A leak is
// only judged after passing tests: a failed test may leave things running.
// database/sql's connection opener (a pool a test did not close) and this
// package's own watchdog are not leaks of the code under test.
func MainNoLeaks(m *testing.M, ignore ...goleak.Option) int {
	code := Main(m)
	if code != 0 {
		return code
	}
	opts := append([]goleak.Option{
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreAnyFunction("myelin/internal/pgtest.watchParent.func1"),
	}, ignore...)
	if err := goleak.Find(opts...); err != nil {
		fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
		return 1
	}
	return 0
}
