package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestCopyTreeAndPackages(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"go.mod":                      "module github.com/matrix-org/complement\n",
		"test_main.go":                "package complement\n",
		"tests/main_test.go":          "package tests\n",
		"tests/csapi/a_test.go":       "package csapi_tests\n",
		"tests/msc2836/x_test.go":     "package tests\n",
		"tests/csapi/testdata/f.json": "{}",
		"tests/helpers/h.go":          "package helpers\n",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Read-only, like the module cache.
		if err := os.WriteFile(p, []byte(body), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != body {
			t.Errorf("%s: %q, %v", name, got, err)
		}
		st, err := os.Stat(filepath.Join(dst, name))
		if err != nil || st.Mode().Perm()&0o200 == 0 {
			t.Errorf("%s is not writable: %v", name, err)
		}
	}
	pkgs, err := Module{Dir: dst}.Packages()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tests", "tests/csapi", "tests/msc2836"}; !reflect.DeepEqual(pkgs, want) {
		t.Errorf("Packages() = %v, want %v", pkgs, want)
	}
}

func TestWriteOverlay(t *testing.T) {
	h := &Harness{ConformanceDir: "/repo/conformance", WorkDir: t.TempDir()}
	path, err := h.writeOverlay(Module{Dir: "/work/complement@v1"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var o overlay
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/work/complement@v1/test_main.go":            "/repo/conformance/overlay/test_main.go",
		"/work/complement@v1/test_package.go":         "/repo/conformance/overlay/test_package.go",
		"/work/complement@v1/myelin_homeserver.go":    "/repo/conformance/overlay/homeserver.go",
		"/work/complement@v1/myelin_namespace.go":     "/repo/conformance/overlay/namespace.go",
		"/work/complement@v1/myelin_postgres.go":      "/repo/conformance/overlay/postgres.go",
		"/work/complement@v1/myelin_deployer_test.go": "/repo/conformance/overlay/deployer_test.go",
	}
	if !reflect.DeepEqual(o.Replace, want) {
		t.Errorf("overlay %v, want %v", o.Replace, want)
	}
}

func TestParseSmoke(t *testing.T) {
	out := []byte(`[RustBackupManager] Checking key backup status...
{"step":"register","result":"pass"}
{"step":"create_room","result":"fail","reason":"MatrixError: [404]"}
not json
{"step":"join","result":"skip","reason":"an earlier step failed"}
`)
	tests := []struct {
		name    string
		out     []byte
		nonZero bool
		want    []string
	}{
		{"failed step", out, true, []string{
			"TestSmoke fail MatrixError: [404]", "TestSmoke/register pass ", "TestSmoke/create_room fail MatrixError: [404]", "TestSmoke/join skip an earlier step failed"}},
		{"all pass", []byte(`{"step":"register","result":"pass"}`), false, []string{"TestSmoke pass ", "TestSmoke/register pass "}},
		{"pass but crashed after", []byte(`{"step":"register","result":"pass"}`), true, []string{"TestSmoke fail smoke.mjs exited non-zero", "TestSmoke/register pass "}},
		{"no steps", []byte("boom\n"), true, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range parseSmoke(tt.out, tt.nonZero) {
			if r.Package != SmokePackage {
				t.Errorf("%s: package %q", tt.name, r.Package)
			}
			got = append(got, r.Test+" "+string(r.Outcome)+" "+r.Reason)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}
