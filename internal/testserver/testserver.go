// Package testserver is the black-box test rig: it builds the real myelin
// binary once per test binary, writes a config for a fresh data directory and
// a free 127.0.0.1 port, and starts, stops (SIGTERM), kills (SIGKILL) and
// restarts the process on SQLite or PostgreSQL. Tests then drive it over
// HTTP exactly as a client would; nothing here reaches into the server's
// packages.
//
// A package using it calls os.Exit(testserver.Main(m)) from TestMain (which
// also stops pgtest's PostgreSQL). MYELIN_E2E_BIN names a prebuilt binary to
// use instead of building one.
package testserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"myelin/internal/pgtest"
)

// Engines are the database engines every black-box test runs on.
var Engines = []string{"sqlite", "postgres"}

// ServerName is the server_name test servers use unless configured otherwise.
const ServerName = "myelin.test"

const (
	readyTimeout = 60 * time.Second // a -race binary on a busy 2-core box starts slowly
	stopTimeout  = 20 * time.Second
	maxLogBytes  = 16 << 20
)

// Options choose the engine and adjust the generated config.
type Options struct {
	// Engine is "sqlite" (default) or "postgres"; postgres gets a fresh
	// database from pgtest.DSN (the test is skipped when none is available,
	// and fails under CI=true).
	Engine string
	// Set overrides config keys after the rig's defaults, by dotted path:
	// {"registration.require_token": true}. The server rejects unknown keys,
	// so a typo fails loudly instead of testing the default.
	Set map[string]any
}

// Server is one myelin process (and its data directory, which outlives
// restarts).
type Server struct {
	t       testing.TB
	bin     string
	cfgPath string
	// Config is the YAML the process was started with. Change it (Set) and
	// call Restart to run the same data with a different config.
	Config Config
	// BaseURL is the client listener, e.g. http://127.0.0.1:40123.
	BaseURL string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the running process has exited
	exitErr error
	logs    *logBuffer
}

// Start builds the binary if needed, writes the config and starts the
// server, returning once /_matrix/client/versions answers 200. The process
// is stopped at the end of the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	dataDir := t.TempDir()
	cfg := Config{}
	cfg.Set("server_name", ServerName)
	cfg.Set("data_dir", dataDir)
	cfg.Set("listeners.federation", "")
	cfg.Set("registration.enabled", true)
	cfg.Set("registration.shared_secret", randomHex(t, 16))
	cfg.Set("auth.password_hash_cost", 4) // bcrypt's minimum: the suite hashes hundreds of passwords
	cfg.Set("rate_limits.enabled", false)
	cfg.Set("logging.level", "debug") // the privacy checks read everything the server says
	// Fake push gateways (and later other fakes) listen on loopback, which
	// the outbound client refuses by default.
	cfg.Set("outbound.allow_networks", []string{"127.0.0.0/8", "::1/128"})
	switch opts.Engine {
	case "", "sqlite":
		cfg.Set("database.engine", "sqlite")
		cfg.Set("database.dsn", "myelin.db")
	case "postgres":
		cfg.Set("database.engine", "postgres")
		cfg.Set("database.dsn", pgtest.DSN(t))
	default:
		t.Fatalf("testserver: unknown engine %q", opts.Engine)
	}
	for k, v := range opts.Set {
		cfg.Set(k, v)
	}
	s := &Server{t: t, bin: bin, Config: cfg, logs: &logBuffer{}}
	s.cfgPath = filepath.Join(dataDir, "config.yaml")
	t.Cleanup(func() {
		if s.running() {
			if err := s.stop(syscall.SIGTERM); err != nil {
				t.Errorf("myelin did not shut down cleanly on SIGTERM: %v", err)
			}
		}
		s.checkLogs(t)
		if t.Failed() {
			t.Logf("myelin log (last 32 KiB):\n%s", s.logs.tail(32<<10))
		}
	})
	s.start(true)
	return s
}

// SharedSecret is the registration shared secret the rig generated.
func (s *Server) SharedSecret() string {
	v, _ := s.Config.Get("registration.shared_secret").(string)
	return v
}

// checkLogs fails the test for what must never appear in the server's
// output: a data race (the binary is built with -race under -race) or a
// panic, recovered or not.
func (s *Server) checkLogs(t testing.TB) {
	logs := s.logs.String()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "http: panic serving"} {
		if strings.Contains(logs, bad) {
			t.Errorf("myelin log contains %q", bad)
		}
	}
}

// Logs returns everything the server has written to stderr since Start,
// across restarts.
func (s *Server) Logs() string { return s.logs.String() }

// Stop sends SIGTERM and waits for a clean exit; a non-zero exit status or a
// hang fails the test (graceful shutdown is part of the contract).
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(syscall.SIGTERM); err != nil {
		s.t.Fatalf("myelin did not shut down cleanly on SIGTERM: %v", err)
	}
}

// Kill sends SIGKILL (a power cut as far as the process knows) and waits.
func (s *Server) Kill() {
	s.t.Helper()
	_ = s.stop(syscall.SIGKILL)
}

// Restart starts the process again on the same port, data directory and
// database, rewriting the config from s.Config. Stop or Kill it first.
func (s *Server) Restart() {
	s.t.Helper()
	if s.running() {
		s.t.Fatal("testserver: Restart while the process is running")
	}
	s.start(false)
}

// Run runs a CLI subcommand of the same binary against the same config,
// e.g. Run("user", "create", "bob", "--password", "pw"). It returns stdout;
// a non-zero exit fails the test with stderr.
func (s *Server) Run(args ...string) string {
	s.t.Helper()
	out, stderr, err := s.RunErr(args...)
	if err != nil {
		s.t.Fatalf("myelin %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// RunErr is Run without failing: it returns stdout, stderr and the exit error.
func (s *Server) RunErr(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, append(args, "--config", s.cfgPath)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// URL joins the base URL and a path (which may carry a query).
func (s *Server) URL(path string) string { return s.BaseURL + path }

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// start writes the config and launches the process. On a first start a
// port taken between picking and binding is retried with another port; on a
// restart the port is kept (clients hold the URL).
func (s *Server) start(pickPort bool) {
	s.t.Helper()
	for attempt := 0; ; attempt++ {
		if pickPort {
			s.Config.Set("listeners.client", freeAddr(s.t))
		}
		s.BaseURL = "http://" + s.Config.Get("listeners.client").(string)
		s.writeConfig()
		err := s.launch()
		if err == nil {
			return
		}
		if pickPort && attempt < 3 && strings.Contains(s.logs.tail(4096), "address already in use") {
			continue
		}
		s.t.Fatalf("myelin did not become ready: %v\nlog tail:\n%s", err, s.logs.tail(8<<10))
	}
}

func (s *Server) writeConfig() {
	s.t.Helper()
	b, err := yaml.Marshal(map[string]any(s.Config))
	if err != nil {
		s.t.Fatalf("testserver: marshal config: %v", err)
	}
	if err := os.WriteFile(s.cfgPath, b, 0o600); err != nil {
		s.t.Fatalf("testserver: write config: %v", err)
	}
}

// launch starts the process and waits for readiness or its early exit.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, "serve", "--config", s.cfgPath)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.exitErr = cmd, done, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(done)
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.mu.Lock()
			defer s.mu.Unlock()
			return fmt.Errorf("process exited before it was ready: %v", s.exitErr)
		default:
		}
		resp, err := client.Get(s.BaseURL + "/_matrix/client/versions")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	_ = s.stop(syscall.SIGKILL)
	return fmt.Errorf("not ready after %s", readyTimeout)
}

// stop signals the process and waits for it; after stopTimeout it kills it.
// It returns the exit error (nil for a clean exit 0).
func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || done == nil {
		return nil
	}
	// Pooled keep-alive connections die with the process; a POST sent on
	// one after a restart would fail instead of being retried.
	defer httpClient.CloseIdleConnections()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("still running %s after %v; killed", stopTimeout, sig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitErr
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testserver: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// logBuffer collects the process output (bounded) for failure reports and
// the privacy checks.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len()+len(p) > maxLogBytes {
		return len(p), nil // keep the start; a test that logs 16 MiB has other problems
	}
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
