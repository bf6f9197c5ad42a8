package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"myelin/conformance/results"
)

// NamespaceCommand is the hidden subcommand of the runner that, already
// inside the private mount namespace, bind-mounts the test /etc/hosts and
// /etc/resolv.conf and then executes the test binary.
const NamespaceCommand = "ns-exec"

// complementHost is the name Complement's mock servers give themselves
// (COMPLEMENT_HOSTNAME_RUNNING_COMPLEMENT's default); Myelin must reach it.
const complementHost = "host.docker.internal"

// maxServers is how many hsN names the test /etc/hosts maps. Complement
// deploys at most three.
const maxServers = 9

// HostsFile returns the /etc/hosts of the test namespace: the machine's own
// entries minus any for the test names, then hsN → 127.0.10.N and
// Complement's host name → 127.0.0.1. The process deployer listens on the
// same addresses (overlay/test_package.go).
func HostsFile(base []byte) []byte {
	ours := map[string]bool{complementHost: true}
	for n := 1; n <= maxServers; n++ {
		ours[fmt.Sprintf("hs%d", n)] = true
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(base))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(strings.SplitN(line, "#", 2)[0])
		clash := false
		for _, f := range fields[min(1, len(fields)):] {
			clash = clash || ours[f]
		}
		if !clash {
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("# Complement test names (conformance/harness)\n")
	b.WriteString("127.0.0.1 " + complementHost + "\n")
	for n := 1; n <= maxServers; n++ {
		fmt.Fprintf(&b, "127.0.10.%d hs%d\n", n, n)
	}
	return b.Bytes()
}

// resolvConf sends DNS queries inside the namespace to a closed local port:
// every name the tests use is in /etc/hosts, and a real resolver would only
// add timeouts to Myelin's SRV lookups for hsN.
const resolvConf = "# Complement test namespace (conformance/harness): no DNS.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

// namespaceFiles writes the hosts and resolv.conf files to bind-mount.
func (h *Harness) namespaceFiles() (hosts, resolv string, err error) {
	base, err := os.ReadFile("/etc/hosts")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("read /etc/hosts: %w", err)
	}
	hosts = filepath.Join(h.WorkDir, "hosts")
	if err := os.WriteFile(hosts, HostsFile(base), 0o644); err != nil {
		return "", "", fmt.Errorf("write hosts: %w", err)
	}
	resolv = filepath.Join(h.WorkDir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte(resolvConf), 0o644); err != nil {
		return "", "", fmt.Errorf("write resolv.conf: %w", err)
	}
	return hosts, resolv, nil
}

// unshareArgs starts a command in a new mount namespace whose mounts do not
// propagate back to the machine. Root gets a plain mount namespace; other
// users need a user namespace mapping them to root inside it.
func unshareArgs() []string {
	args := []string{"unshare"}
	if os.Geteuid() != 0 {
		args = append(args, "--user", "--map-root-user")
	}
	return append(args, "--mount", "--propagation", "private", "--")
}

// NamespaceExec implements NamespaceCommand: args are
// "HOSTS RESOLV -- COMMAND ARGS...". It only returns on error.
func NamespaceExec(args []string) error {
	if len(args) < 4 || args[2] != "--" {
		return fmt.Errorf("usage: %s HOSTS RESOLV -- COMMAND [ARGS...]", NamespaceCommand)
	}
	mounts := [][2]string{{args[0], "/etc/hosts"}, {args[1], "/etc/resolv.conf"}}
	for _, m := range mounts {
		if _, err := os.Stat(m[1]); errors.Is(err, os.ErrNotExist) {
			// Nothing to cover (a minimal container without resolv.conf).
			continue
		}
		if err := syscall.Mount(m[0], m[1], "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s (needs a private mount namespace: run through conformance/run.sh): %w", m[0], m[1], err)
		}
	}
	cmd := args[3:]
	bin, err := exec.LookPath(cmd[0])
	if err != nil {
		return fmt.Errorf("find %s: %w", cmd[0], err)
	}
	return syscall.Exec(bin, cmd, os.Environ())
}

// RunOptions select what a package run does.
type RunOptions struct {
	// MyelinBinary is the server the deployer starts.
	MyelinBinary string
	// Run is a `go test -run` pattern; empty runs every test.
	Run string
	// Timeout bounds the whole package (go test's -timeout).
	Timeout time.Duration
	// Raw, if set, receives the test2json stream as it arrives.
	Raw io.Writer
}

// RunPackage runs one compiled test package in the test namespace and feeds
// its events to c. Test failures are not errors: they are in c. The error
// reports a run that could not happen at all.
func (h *Harness) RunPackage(ctx context.Context, mod Module, pkg, testBinary string, opts RunOptions, c *results.Collector) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find runner executable: %w", err)
	}
	hosts, resolv, err := h.namespaceFiles()
	if err != nil {
		return err
	}
	serverDir := filepath.Join(h.WorkDir, "servers")
	if err := os.MkdirAll(serverDir, 0o755); err != nil {
		return fmt.Errorf("create server dir: %w", err)
	}

	args := []string{"tool", "test2json", "-t", "-p", pkg}
	args = append(args, unshareArgs()...)
	args = append(args, self, NamespaceCommand, hosts, resolv, "--", testBinary,
		"-test.v=test2json", "-test.count=1", "-test.timeout="+opts.Timeout.String())
	if opts.Run != "" {
		args = append(args, "-test.run="+opts.Run)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join(mod.Dir, pkg)
	cmd.Env = append(os.Environ(),
		"MYELIN_BIN="+opts.MyelinBinary,
		"MYELIN_CONFORMANCE_CONFIG_TEMPLATE="+filepath.Join(h.ConformanceDir, "homeserver.yaml.tmpl"),
		"MYELIN_CONFORMANCE_WORKDIR="+serverDir,
	)
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
		// test2json itself failed (e.g. unshare is missing): the stream
		// explains nothing, so pass its complaint on.
		h.logf("%s: %s", pkg, strings.TrimSpace(stderr.String()))
	}
	return nil
}
