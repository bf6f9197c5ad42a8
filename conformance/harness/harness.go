// Package harness owns the mechanics of running Complement against Myelin
// without Docker: it builds Myelin, copies the pinned Complement module out
// of the module cache, compiles its test packages with the process deployer
// overlaid on Complement's Docker deployer (conformance/overlay), and runs
// each package's test binary through test2json. The deployer itself starts
// Myelin processes and gives them the names hs1, hs2, hs3.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ComplementModule is the module path of Complement.
const ComplementModule = "github.com/matrix-org/complement"

// overlayTag is the build tag of the files in conformance/overlay; without it
// the conformance module's own `go build ./...` skips them (they only compile
// inside Complement's module, next to its internal packages).
const overlayTag = "myelin_overlay"

// Harness runs Complement for one checkout.
type Harness struct {
	// ConformanceDir is the conformance module (holds go.mod, overlay/,
	// homeserver.yaml.tmpl).
	ConformanceDir string
	// RepoDir is the Myelin repository root (holds cmd/myelin).
	RepoDir string
	// WorkDir holds everything a run produces: the Complement copy, test
	// binaries, server data, raw logs. Not committed.
	WorkDir string
	// Log receives progress lines.
	Log io.Writer
	// ServerEnv is added to every test binary's environment; the deployer
	// reads its database settings from it (see Postgres.Env).
	ServerEnv []string
}

func (h *Harness) logf(format string, args ...any) {
	fmt.Fprintf(h.Log, format+"\n", args...)
}

// command runs a go-tool-style command in dir, returning combined output in
// the error when it fails.
func command(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// BuildMyelin builds cmd/myelin into the work directory.
func (h *Harness) BuildMyelin(ctx context.Context) (string, error) {
	bin := filepath.Join(h.WorkDir, "bin", "myelin")
	start := time.Now()
	if _, err := command(ctx, h.RepoDir, nil, "go", "build", "-o", bin, "./cmd/myelin"); err != nil {
		return "", fmt.Errorf("build myelin: %w", err)
	}
	h.logf("built %s in %v", bin, time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// Module is a writable copy of the pinned Complement module.
type Module struct {
	Version string
	Dir     string // the copy, outside the module cache
}

// Complement downloads the Complement version pinned in the conformance
// module's go.mod (verified against its go.sum) and copies it out of the
// read-only module cache, because `go test -overlay` refuses to replace
// files inside the cache.
func (h *Harness) Complement(ctx context.Context) (Module, error) {
	out, err := command(ctx, h.ConformanceDir, nil, "go", "mod", "download", "-json", ComplementModule)
	if err != nil {
		return Module{}, fmt.Errorf("download complement: %w", err)
	}
	var info struct{ Version, Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return Module{}, fmt.Errorf("parse go mod download output: %w", err)
	}
	if info.Error != "" || info.Dir == "" {
		return Module{}, fmt.Errorf("download complement: %s", info.Error)
	}
	mod := Module{Version: info.Version, Dir: filepath.Join(h.WorkDir, "complement@"+info.Version)}
	stamp := filepath.Join(mod.Dir, ".myelin-copied")
	if _, err := os.Stat(stamp); err == nil {
		return mod, nil
	}
	if err := os.RemoveAll(mod.Dir); err != nil {
		return Module{}, fmt.Errorf("clear old copy: %w", err)
	}
	if err := copyTree(info.Dir, mod.Dir); err != nil {
		return Module{}, fmt.Errorf("copy complement: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(info.Version+"\n"), 0o644); err != nil {
		return Module{}, fmt.Errorf("stamp copy: %w", err)
	}
	h.logf("copied complement %s to %s", info.Version, mod.Dir)
	return mod, nil
}

// copyTree copies a directory tree with writable permissions (the module
// cache is read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, file)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(file)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// Packages lists Complement's test packages (relative paths such as
// "tests/csapi"), the way they are named in results.
func (mod Module) Packages() ([]string, error) {
	var pkgs []string
	err := filepath.WalkDir(filepath.Join(mod.Dir, "tests"), func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(file, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(mod.Dir, filepath.Dir(file))
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); !slices.Contains(pkgs, rel) {
			pkgs = append(pkgs, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list complement test packages: %w", err)
	}
	slices.Sort(pkgs)
	return pkgs, nil
}

// overlay is the JSON `go build -overlay` reads.
type overlay struct {
	Replace map[string]string
}

// overlayFiles maps the Complement files the process deployer replaces to
// their replacements in conformance/overlay.
// The myelin_* files are new: the server process and the deployer's tests.
var overlayFiles = map[string]string{
	"test_main.go":            "test_main.go",
	"test_package.go":         "test_package.go",
	"myelin_homeserver.go":    "homeserver.go",
	"myelin_namespace.go":     "namespace.go",
	"myelin_postgres.go":      "postgres.go",
	"myelin_deployer_test.go": "deployer_test.go",
}

// writeOverlay writes the overlay file for a Complement copy.
func (h *Harness) writeOverlay(mod Module) (string, error) {
	o := overlay{Replace: map[string]string{}}
	for orig, repl := range overlayFiles {
		o.Replace[filepath.Join(mod.Dir, orig)] = filepath.Join(h.ConformanceDir, "overlay", repl)
	}
	data, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode overlay: %w", err)
	}
	path := filepath.Join(h.WorkDir, "overlay.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("write overlay: %w", err)
	}
	return path, nil
}

// BuildFlags are the flags every go command on the Complement copy needs.
func (h *Harness) BuildFlags(mod Module) ([]string, error) {
	ov, err := h.writeOverlay(mod)
	if err != nil {
		return nil, err
	}
	return []string{"-tags", overlayTag, "-overlay", ov}, nil
}

// CompileTests builds one test binary per package; the returned map is
// keyed by package.
func (h *Harness) CompileTests(ctx context.Context, mod Module, pkgs []string) (map[string]string, error) {
	if len(pkgs) == 0 {
		return map[string]string{}, nil
	}
	flags, err := h.BuildFlags(mod)
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(h.WorkDir, "bin", "tests")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("create test binary dir: %w", err)
	}
	// One `go test -c` for all packages lets the go command build them in
	// parallel. Binaries are named after the last path element, which is
	// unique among Complement's test packages (tests, csapi, mscNNNN).
	bins := map[string]string{}
	args := append([]string{"test", "-c", "-o", binDir + string(filepath.Separator)}, flags...)
	for _, p := range pkgs {
		bin := filepath.Join(binDir, path.Base(p)+".test")
		for other, b := range bins {
			if b == bin {
				return nil, fmt.Errorf("test packages %s and %s would share binary %s", other, p, bin)
			}
		}
		bins[p] = bin
		args = append(args, "./"+p)
	}
	start := time.Now()
	if _, err := command(ctx, mod.Dir, nil, "go", args...); err != nil {
		return nil, fmt.Errorf("compile complement tests: %w", err)
	}
	h.logf("compiled %d test packages in %v", len(pkgs), time.Since(start).Round(100*time.Millisecond))
	return bins, nil
}

// Staticcheck is the pinned staticcheck the root Makefile uses too.
const Staticcheck = "honnef.co/go/tools/cmd/staticcheck@v0.7.0"

// Check is the lint and unit tests of everything conformance/ owns: gofmt,
// go vet, staticcheck and go test -race for the conformance module, and the
// same for the overlay files compiled inside Complement's root package.
func (h *Harness) Check(ctx context.Context, mod Module) error {
	step := func(what string, fn func() error) error {
		start := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		h.logf("check: %s ok (%v)", what, time.Since(start).Round(100*time.Millisecond))
		return nil
	}
	run := func(dir string, env []string, name string, args ...string) func() error {
		return func() error {
			_, err := command(ctx, dir, env, name, args...)
			return err
		}
	}
	dirs := []string{"cmd", "harness", "overlay", "report", "results"}
	if err := step("gofmt", func() error {
		out, err := command(ctx, h.ConformanceDir, nil, "gofmt", append([]string{"-l"}, dirs...)...)
		if err != nil {
			return err
		}
		if files := strings.TrimSpace(string(out)); files != "" {
			return fmt.Errorf("needs gofmt:\n%s", files)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := step("go vet (conformance module)", run(h.ConformanceDir, nil, "go", "vet", "./...")); err != nil {
		return err
	}
	if err := step("staticcheck (conformance module)", run(h.ConformanceDir, nil, "go", "run", Staticcheck, "./...")); err != nil {
		return err
	}
	if err := step("go test -race (conformance module)", run(h.ConformanceDir, nil, "go", "test", "-race", "-count=1", "./...")); err != nil {
		return err
	}

	flags, err := h.BuildFlags(mod)
	if err != nil {
		return err
	}
	if err := step("go vet (overlay)", run(mod.Dir, nil, "go", append(append([]string{"vet"}, flags...), ".", "./tests/...")...)); err != nil {
		return err
	}
	env := []string{"MYELIN_CONFORMANCE_CONFIG_TEMPLATE=" + filepath.Join(h.ConformanceDir, "homeserver.yaml.tmpl")}
	if err := step("go test -race (overlay: the process deployer)", func() error {
		out, err := command(ctx, mod.Dir, env, "go", append(append([]string{"test", "-race", "-count=1"}, flags...), ".")...)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	}); err != nil {
		return err
	}
	// staticcheck has no -overlay: check a scratch copy of the root package
	// with the overlay files put in place.
	return step("staticcheck (overlay)", func() error {
		scratch := filepath.Join(h.WorkDir, "staticcheck")
		if err := os.RemoveAll(scratch); err != nil {
			return err
		}
		if err := copyTree(mod.Dir, scratch); err != nil {
			return err
		}
		for orig, repl := range overlayFiles {
			data, err := os.ReadFile(filepath.Join(h.ConformanceDir, "overlay", repl))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(scratch, orig), data, 0o644); err != nil {
				return err
			}
		}
		return run(scratch, nil, "go", "run", Staticcheck, "-tags", overlayTag, ".")()
	})
}
