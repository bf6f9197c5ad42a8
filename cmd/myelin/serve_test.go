package main

import (
	"runtime/debug"
	"testing"
)

func TestSetGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, tc := range []struct {
		name, env, wantLog string
		wantPercent        int
	}{
		{"no GOGC: the server's default", "", "200", defaultGCPercent},
		{"GOGC set: the runtime already applied it, left alone", "50", "50", 100},
		{"GOGC=off is the operator's to choose", "off", "off", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			got := setGCPercent(func(k string) string {
				if k != "GOGC" {
					t.Fatalf("read %q, want GOGC", k)
				}
				return tc.env
			})
			if got != tc.wantLog {
				t.Errorf("logged gogc %q, want %q", got, tc.wantLog)
			}
			if p := debug.SetGCPercent(100); p != tc.wantPercent {
				t.Errorf("GC percent %d, want %d", p, tc.wantPercent)
			}
		})
	}
}
