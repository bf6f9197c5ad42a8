package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"myelin/conformance/results"
)

// RunOptions select what a package run does.
type RunOptions struct {
	// MyelinBinary is the server the deployer starts.
	MyelinBinary string
	// Run is a `go test -run` pattern; empty runs every test.
	Run string
	// Skip is a `go test -skip` pattern; empty skips nothing.
	Skip string
	// Timeout bounds the whole package (go test's -timeout).
	Timeout time.Duration
	// Raw, if set, receives the test2json stream as it arrives.
	Raw io.Writer
}

// RunPackage runs one compiled test package in the test namespace and feeds
// its events to c. Test failures are not errors: they are in c. The error
// reports a run that could not happen at all.
func (h *Harness) RunPackage(ctx context.Context, mod Module, pkg, testBinary string, opts RunOptions, c *results.Collector) error {
	serverDir := filepath.Join(h.WorkDir, "servers")
	if err := os.MkdirAll(serverDir, 0o755); err != nil {
		return fmt.Errorf("create server dir: %w", err)
	}

	args := []string{"tool", "test2json", "-t", "-p", pkg, testBinary,
		"-test.v=test2json", "-test.count=1", "-test.timeout=" + opts.Timeout.String()}
	if opts.Run != "" {
		args = append(args, "-test.run="+opts.Run)
	}
	if opts.Skip != "" {
		args = append(args, "-test.skip="+opts.Skip)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join(mod.Dir, pkg)
	cmd.Env = append(os.Environ(),
		"MYELIN_BIN="+opts.MyelinBinary,
		"MYELIN_CONFORMANCE_CONFIG_TEMPLATE="+filepath.Join(h.ConformanceDir, "homeserver.yaml.tmpl"),
		"MYELIN_CONFORMANCE_WORKDIR="+serverDir,
	)
	cmd.Env = append(cmd.Env, h.ServerEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pipe test2json: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", pkg, err)
	}
	var in io.Reader = stdout
	if opts.Raw != nil {
		in = io.TeeReader(stdout, opts.Raw)
	}
	readErr := c.Read(in)
	waitErr := cmd.Wait()
	if readErr != nil {
		return fmt.Errorf("run %s: %w", pkg, readErr)
	}
	var exit *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exit) {
		return fmt.Errorf("run %s: %w\n%s", pkg, waitErr, stderr.String())
	}
	if stderr.Len() > 0 {
		// test2json itself failed: the stream explains nothing, so pass
		// its complaint on.
		h.logf("%s: %s", pkg, strings.TrimSpace(stderr.String()))
	}
	return nil
}
