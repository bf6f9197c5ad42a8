package testserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"myelin/internal/pgtest"
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Binary returns the path of the myelin binary, building ./cmd/myelin once
// per test binary. When the tests run with -race the server is built with
// -race too, so the black-box suite also hunts data races in the server.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(build)
	if buildErr != nil {
		t.Fatalf("testserver: %v", buildErr)
	}
	return binPath
}

func build() {
	if p := os.Getenv("MYELIN_E2E_BIN"); p != "" {
		binPath = p
		if _, err := os.Stat(p); err != nil {
			buildErr = fmt.Errorf("MYELIN_E2E_BIN: %w", err)
		}
		return
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		buildErr = fmt.Errorf("go env GOMOD: %w", err)
		return
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		buildErr = fmt.Errorf("not inside the myelin module")
		return
	}
	buildDir, err = os.MkdirTemp("", "myelin-e2e-bin-")
	if err != nil {
		buildErr = err
		return
	}
	binPath = filepath.Join(buildDir, "myelin")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/myelin")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Main runs the tests, then stops pgtest's PostgreSQL and removes the built
// binary. Call it from TestMain: os.Exit(testserver.Main(m)).
func Main(m *testing.M) int {
	code := pgtest.Main(m)
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}
