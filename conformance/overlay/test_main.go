//go:build myelin_overlay

// This file replaces Complement's test_main.go through `go test -overlay`
// (see conformance/README.md). Complement's own version builds Docker images
// and starts containers; there is no Docker engine where Myelin's CI runs, so
// this one starts Myelin as plain processes instead. The exported names and
// signatures are Complement's API: every test package calls them.

package complement

import (
	"fmt"
	"os"
	"testing"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/ct"
)

// packageDeployer is created by TestMain and used by every Deploy call of the
// test binary.
var packageDeployer *processDeployer

// TestMain is the entry point each Complement test package calls from its own
// TestMain. namespace names the package (e.g. "csapi") and keeps the server
// data of different packages apart.
func TestMain(m *testing.M, namespace string) {
	TestMainWithCleanup(m, namespace, nil)
}

// TestMainWithCleanup is TestMain with a hook that runs after the tests and
// before the servers are torn down.
func TestMainWithCleanup(m *testing.M, namespace string, cleanup func()) {
	d, err := newProcessDeployer(namespace)
	if err != nil {
		fmt.Fprintf(os.Stderr, "complement (myelin process deployer): %v\n", err)
		os.Exit(1)
	}
	packageDeployer = d
	code := m.Run()
	if cleanup != nil {
		cleanup()
	}
	d.close()
	os.Exit(code)
}

// Deploy starts numServers fresh homeservers named hs1..hsN and returns the
// deployment; it fails the test if they do not come up.
func Deploy(t ct.TestLike, numServers int) Deployment {
	t.Helper()
	if packageDeployer == nil {
		ct.Fatalf(t, "Deploy: TestMain did not run; call complement.TestMain from the package's TestMain")
	}
	names := make([]string, numServers)
	for i := range names {
		names[i] = fmt.Sprintf("hs%d", i+1)
	}
	return packageDeployer.deploy(t, names)
}

// OldDeploy deploys a blueprint. Blueprints that only name empty homeservers
// are started as fresh processes like Deploy. Blueprints that bake users,
// rooms or application services into a Docker image are skipped: recreating
// that state needs Complement's Docker builder, and pretending to have it
// would make the test's verdict meaningless.
func OldDeploy(t ct.TestLike, blueprint b.Blueprint) Deployment {
	t.Helper()
	if packageDeployer == nil {
		ct.Fatalf(t, "OldDeploy: TestMain did not run; call complement.TestMain from the package's TestMain")
	}
	names, reason := blueprintServers(blueprint)
	if reason != "" {
		t.Skipf("OldDeploy(%s): %s", blueprint.Name, reason)
		return nil
	}
	return packageDeployer.deploy(t, names)
}

// blueprintServers returns the homeserver names of a blueprint the process
// deployer can start as is, or the reason it cannot.
func blueprintServers(bp b.Blueprint) (names []string, reason string) {
	for _, hs := range bp.Homeservers {
		switch {
		case len(hs.ApplicationServices) > 0:
			return nil, "needs a Docker-built blueprint image with application services registered (Docker-only)"
		case len(hs.Users) > 0 || len(hs.Rooms) > 0:
			return nil, "needs a Docker-built blueprint image with pre-created users and rooms (Docker-only)"
		case hs.BaseImageURI != nil:
			return nil, "needs a different homeserver image for " + hs.Name + " (Docker-only)"
		case serverIndex(hs.Name) == 0:
			return nil, fmt.Sprintf("homeserver name %q is not of the form hsN", hs.Name)
		}
		names = append(names, hs.Name)
	}
	if len(names) == 0 {
		return nil, "blueprint has no homeservers"
	}
	return names, ""
}
