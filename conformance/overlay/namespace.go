//go:build myelin_overlay

// A new file in Complement's root package (added through the overlay): name
// resolution for the servers. Complement's tests name servers hs1, hs2, hs3
// and its mock servers call themselves host.docker.internal; Docker's DNS
// resolves those inside a deployment's network. Here each server process
// starts in its own private mount namespace (`unshare --mount`) with an
// /etc/hosts bind-mounted over the real one that maps the names of *its*
// deployment, so two deployments alive at once (some tests nest them) never
// reach each other's servers, and Myelin needs no test-only name mapping.

package complement

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Environment of the hop between unshare and the server: the test binary
// re-executes itself with these set, mounts, and executes the server.
const (
	envNamespaceHosts  = "MYELIN_DEPLOYER_NS_HOSTS"
	envNamespaceResolv = "MYELIN_DEPLOYER_NS_RESOLV"
)

// maxServersPerDeployment bounds hsN in the hosts files; Complement deploys
// at most three.
const maxServersPerDeployment = 9

// maxSlots bounds how many deployments can be alive at once (each gets its
// own block of loopback addresses: 127.0.(10+slot).N).
const maxSlots = 200

func init() {
	hosts := os.Getenv(envNamespaceHosts)
	if hosts == "" {
		return
	}
	err := enterServerNamespace(hosts, os.Getenv(envNamespaceResolv), os.Args[1:])
	fmt.Fprintf(os.Stderr, "myelin process deployer: %v\n", err)
	os.Exit(127)
}

// enterServerNamespace runs in the fresh mount namespace: it bind-mounts the
// deployment's hosts file (and a resolv.conf without DNS servers) and
// executes the server command. It only returns on error.
func enterServerNamespace(hosts, resolv string, command []string) error {
	if len(command) == 0 {
		return errors.New("no server command")
	}
	mounts := [][2]string{{hosts, "/etc/hosts"}}
	if resolv != "" {
		mounts = append(mounts, [2]string{resolv, "/etc/resolv.conf"})
	}
	for _, m := range mounts {
		if _, err := os.Stat(m[1]); errors.Is(err, os.ErrNotExist) {
			continue // nothing to cover, e.g. no resolv.conf in a minimal container
		}
		if err := syscall.Mount(m[0], m[1], "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s: %w", m[0], m[1], err)
		}
	}
	os.Unsetenv(envNamespaceHosts)
	os.Unsetenv(envNamespaceResolv)
	return syscall.Exec(command[0], command, os.Environ())
}

// launcher returns the command prefix that starts a process in a new
// private mount namespace and has this binary set it up (see init).
func launcher() ([]string, error) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("the process deployer needs util-linux unshare: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find test binary: %w", err)
	}
	args := []string{unshare}
	if os.Geteuid() != 0 {
		// Without root, a user namespace grants the right to mount.
		args = append(args, "--user", "--map-root-user")
	}
	return append(args, "--mount", "--propagation", "private", "--", self), nil
}

// slotIP is the loopback address of hsN in a deployment slot.
func slotIP(slot, n int) string {
	return fmt.Sprintf("127.0.%d.%d", 10+slot, n)
}

// hostsFile returns the /etc/hosts servers of a slot see: the machine's
// entries minus any for the test names, then hsN and Complement's host name.
func hostsFile(base []byte, slot int, complementHost string) []byte {
	ours := map[string]bool{complementHost: true}
	for n := 1; n <= maxServersPerDeployment; n++ {
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
	fmt.Fprintf(&b, "# Complement deployment slot %d (myelin process deployer)\n", slot)
	fmt.Fprintf(&b, "127.0.0.1 %s\n", complementHost)
	for n := 1; n <= maxServersPerDeployment; n++ {
		fmt.Fprintf(&b, "%s hs%d\n", slotIP(slot, n), n)
	}
	return b.Bytes()
}

// resolvConf sends DNS queries to a closed local port: every name the
// servers need is in their hosts file, and a real resolver would only add
// timeouts to Myelin's SRV lookups for hsN.
const resolvConf = "# Complement servers (myelin process deployer): no DNS.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
