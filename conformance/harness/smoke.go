package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"myelin/conformance/results"
)

// SmokePackage and SmokeTest name the matrix-js-sdk smoke in results: each
// step is a subtest of "jssdk TestSmoke".
const (
	SmokePackage = "jssdk"
	SmokeTest    = "TestSmoke"
)

// smokeConfig fills homeserver.yaml.tmpl for the single smoke server: client
// API only, no federation listener.
type smokeConfig struct {
	ServerName     string
	DataDir        string
	ClientAddr     string
	FederationAddr string
	TLSCert        string
	TLSKey         string
	SharedSecret   string
	DatabaseEngine string
	DatabaseDSN    string
}

// smokeStep is one line of smoke.mjs output.
type smokeStep struct {
	Step   string
	Result results.Outcome
	Reason string
}

// Smoke runs conformance/jssdk/smoke.mjs with matrix-js-sdk against one
// fresh Myelin server and returns its steps as results. The node modules
// (matrix-js-sdk and Node 22 itself, from the npm registry) are installed
// from the committed package-lock.json on first use.
func (h *Harness) Smoke(ctx context.Context, myelin string) ([]results.Result, error) {
	dir := filepath.Join(h.ConformanceDir, "jssdk")
	node := filepath.Join(dir, "node_modules", ".bin", "node")
	if _, err := os.Stat(node); err != nil {
		start := time.Now()
		if _, err := command(ctx, dir, nil, "npm", "ci", "--no-audit", "--no-fund"); err != nil {
			return nil, fmt.Errorf("install matrix-js-sdk: %w", err)
		}
		h.logf("installed matrix-js-sdk and node in %v", time.Since(start).Round(100*time.Millisecond))
	}

	srv, err := h.startSmokeServer(ctx, myelin)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	cmd := exec.CommandContext(ctx, node, "smoke.mjs", srv.baseURL)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) {
		return nil, fmt.Errorf("run smoke.mjs: %w", runErr)
	}

	rs := parseSmoke(out, runErr != nil)
	if len(rs) == 0 {
		return nil, fmt.Errorf("smoke.mjs reported no steps (exit %v): %s", runErr, tail(stderr.String(), 20))
	}
	if rs[0].Outcome == results.Fail {
		h.logf("smoke server log (last lines):\n%s", tail(srv.log(), 30))
	}
	return rs, nil
}

// parseSmoke turns smoke.mjs output into results: the verdict of the whole
// (failed if a step failed or the script exited non-zero) first, then the
// steps in the order they ran. No steps means no results.
func parseSmoke(out []byte, exitedNonZero bool) []results.Result {
	var steps []results.Result
	top := results.Result{Package: SmokePackage, Test: SmokeTest, Outcome: results.Pass}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var s smokeStep
		if json.Unmarshal(sc.Bytes(), &s) != nil || s.Step == "" {
			continue // the SDK's own console output
		}
		steps = append(steps, results.Result{Package: SmokePackage, Test: SmokeTest + "/" + s.Step, Outcome: s.Result, Reason: s.Reason})
		if s.Result == results.Fail && top.Outcome == results.Pass {
			top.Outcome, top.Reason = results.Fail, s.Reason
		}
	}
	if len(steps) == 0 {
		return nil
	}
	if exitedNonZero && top.Outcome == results.Pass {
		top.Outcome, top.Reason = results.Fail, "smoke.mjs exited non-zero"
	}
	return append([]results.Result{top}, steps...)
}

// smokeServer is the one Myelin process the smoke talks to.
type smokeServer struct {
	baseURL string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func (s *smokeServer) log() string {
	data, _ := os.ReadFile(s.logPath)
	return string(data)
}

func (s *smokeServer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (h *Harness) startSmokeServer(ctx context.Context, myelin string) (*smokeServer, error) {
	dir := filepath.Join(h.WorkDir, "smoke")
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear smoke dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("create smoke dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tmplPath := filepath.Join(h.ConformanceDir, "homeserver.yaml.tmpl")
	tmpl, err := template.New(filepath.Base(tmplPath)).Option("missingkey=error").ParseFiles(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("parse config template: %w", err)
	}
	var cfg bytes.Buffer
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	if err := tmpl.Execute(&cfg, smokeConfig{
		ServerName:     "smoke.myelin.test",
		DataDir:        filepath.Join(dir, "data"),
		ClientAddr:     addr,
		SharedSecret:   "complement",
		DatabaseEngine: "sqlite",
		DatabaseDSN:    "myelin.db",
	}); err != nil {
		return nil, fmt.Errorf("render smoke config: %w", err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write smoke config: %w", err)
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create smoke log: %w", err)
	}
	cmd := exec.Command(myelin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start myelin: %w", err)
	}
	s := &smokeServer{baseURL: "http://" + addr, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	if err := waitVersions(ctx, s.baseURL, s.done, 30*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w\n%s", err, tail(s.log(), 30))
	}
	return s, nil
}

// waitVersions polls /_matrix/client/versions until it answers 200.
func waitVersions(ctx context.Context, baseURL string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	probe := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/_matrix/client/versions", nil)
		if err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		if resp, err := probe.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("myelin exited before answering /versions")
		case <-ctx.Done():
			return fmt.Errorf("myelin did not answer /versions within %v", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
