package main

import (
	"reflect"
	"regexp"
	"testing"

	"myelin/conformance/results"
)

func TestEndedNormally(t *testing.T) {
	tests := []struct {
		name          string
		before, after results.PackageResult
		want          bool
	}{
		{"passed", results.PackageResult{}, results.PackageResult{Ends: 1, Tail: []string{"PASS"}}, true},
		{"failed normally", results.PackageResult{}, results.PackageResult{Ends: 1, Tail: []string{"x", "FAIL", ""}}, true},
		{"crashed, no verdict", results.PackageResult{Ends: 1}, results.PackageResult{Ends: 1, Tail: []string{"FAIL"}}, false},
		{"verdict after a panic", results.PackageResult{}, results.PackageResult{Ends: 1, Tail: []string{"FAIL", "exit status 2"}}, false},
		{"no output", results.PackageResult{}, results.PackageResult{Ends: 1}, false},
	}
	for _, tt := range tests {
		if got := endedNormally(tt.before, tt.after); got != tt.want {
			t.Errorf("%s: endedNormally = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestExactNames(t *testing.T) {
	if got := exactNames(nil); got != "" {
		t.Errorf("exactNames(nil) = %q", got)
	}
	re := regexp.MustCompile(exactNames([]string{"TestA", "TestB.c"}))
	for name, want := range map[string]bool{"TestA": true, "TestB.c": true, "TestBxc": false, "TestAB": false, "XTestA": false} {
		if re.MatchString(name) != want {
			t.Errorf("%s matched %v, want %v", name, !want, want)
		}
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"tests/csapi", []string{"tests/csapi"}},
		{" tests , tests/csapi ,,", []string{"tests", "tests/csapi"}},
	}
	for _, tt := range tests {
		if got := splitList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitList(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
