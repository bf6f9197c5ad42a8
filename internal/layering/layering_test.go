// Package layering checks that the import graph stays one-way, as the layout
// table in DESIGN.md says. It has no code, only this test: the table below is
// the rule, and `go list` is the truth it is checked against.
package layering

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// allowed maps an area (the first path element under the module, or a
// deeper prefix where one is listed) to the project areas it may import.
// Every area may import itself and internal/ (small shared mechanics).
var allowed = map[string][]string{
	"config":     {},
	"practice":   {},
	"pushrules":  {},
	"internal":   {},
	"storage":    {"practice"},
	"account":    {"storage", "config"},
	"roomserver": {"storage", "config"},
	"syncapi":    {"roomserver", "storage", "config", "e2ee"},
	"e2ee":       {"storage", "roomserver", "config"},
	"federation": {"roomserver", "config"},
	"appservice": {"roomserver", "account", "config"},
	"clientapi":  {"account", "roomserver", "syncapi", "e2ee", "practice", "config", "pushrules", "notifications", "media"},
	// notifications evaluates push rules on new events and keeps unread
	// counts and the notification list.
	"notifications": {"pushrules", "storage", "roomserver", "config"},
	"bridges":       {"appservice", "practice", "config"},
	// media owns the content repository (files, rows, thumbnails); clientapi
	// serves its HTTP endpoints.
	"media": {"storage", "config"},
	// The composition root and black-box tests may import everything.
	"cmd":   nil,
	"tests": nil,
}

const module = "myelin"

func area(pkg string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	first, _, _ := strings.Cut(rest, "/")
	return first
}

func TestImportGraphIsOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		from := area(p.ImportPath)
		rules, known := allowed[from]
		if !known {
			t.Errorf("%s: area %q is not in the layering table; add it (and to DESIGN.md)", p.ImportPath, from)
			continue
		}
		if rules == nil && (from == "cmd" || from == "tests") {
			continue
		}
		ok := map[string]bool{from: true, "internal": true}
		for _, a := range rules {
			ok[a] = true
		}
		for _, imp := range p.Imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			checked++
			if to := area(imp); !ok[to] {
				t.Errorf("%s imports %s: %s may not import %s", p.ImportPath, imp, from, to)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no project imports found; is go list seeing the module?")
	}
}
