package results

import (
	"bytes"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestReadPassList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    PassList
		wantErr bool
	}{
		{"empty", "", PassList{}, false},
		{"comments and blanks", "# header\n\n  \ntests/csapi TestA\n", PassList{"tests/csapi TestA": true}, false},
		{"subtest", "tests TestB/par/x_y\n", PassList{"tests TestB/par/x_y": true}, false},
		{"no package", "TestA\n", nil, true},
		{"not a test name", "tests/csapi Foo\n", nil, true},
		{"embedded space", "tests/csapi TestA extra\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPassList(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPassListWriteReadRoundTrip(t *testing.T) {
	pl := PassList{"tests/csapi TestB": true, "tests TestA/x": true, "tests/csapi TestA": true}
	var buf bytes.Buffer
	if err := pl.Write(&buf); err != nil {
		t.Fatal(err)
	}
	body := buf.String()[len(passListHeader):]
	if want := "tests TestA/x\ntests/csapi TestA\ntests/csapi TestB\n"; body != want {
		t.Errorf("body = %q, want sorted %q", body, want)
	}
	back, err := ReadPassList(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, pl) {
		t.Errorf("round trip %v, want %v", back, pl)
	}
}

func TestPassListAdd(t *testing.T) {
	pl := PassList{"tests TestA": true}
	added := pl.Add([]Result{
		{Package: "tests", Test: "TestA", Outcome: Pass},
		{Package: "tests", Test: "TestB", Outcome: Pass},
		{Package: "tests", Test: "TestC", Outcome: Fail},
		{Package: "tests", Test: "TestD", Outcome: Skip},
	})
	if want := []string{"tests TestB"}; !reflect.DeepEqual(added, want) {
		t.Errorf("added %v, want %v", added, want)
	}
	if want := (PassList{"tests TestA": true, "tests TestB": true}); !reflect.DeepEqual(pl, want) {
		t.Errorf("list %v, want %v", pl, want)
	}
}

func TestRegressions(t *testing.T) {
	pl := PassList{
		"tests/csapi TestA":     true,
		"tests/csapi TestA/sub": true,
		"tests/csapi TestGone":  true,
		"tests TestFed":         true,
		"tests/csapi TestSkip":  true,
	}
	rs := []Result{
		{Package: "tests/csapi", Test: "TestA", Outcome: Pass},
		{Package: "tests/csapi", Test: "TestA/sub", Outcome: Fail, Reason: "boom"},
		{Package: "tests/csapi", Test: "TestSkip", Outcome: Skip},
		{Package: "tests/csapi", Test: "TestNew", Outcome: Fail},
	}
	tests := []struct {
		name string
		ran  []string
		want []string
	}{
		{"csapi only", []string{"tests/csapi"}, []string{"TestA/sub fail", "TestGone fail", "TestSkip skip"}},
		{"both packages", []string{"tests", "tests/csapi"}, []string{"TestFed fail", "TestA/sub fail", "TestGone fail", "TestSkip skip"}},
		{"nothing ran", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range pl.Regressions(rs, tt.ran) {
				got = append(got, r.Test+" "+string(r.Outcome))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRunPattern(t *testing.T) {
	pl := PassList{
		"tests/csapi TestLogin/parallel/a": true,
		"tests/csapi TestLogin":            true,
		"tests/csapi TestRegistration/x":   true,
		"tests TestFed":                    true,
	}
	tests := []struct {
		pkg, want string
		match     []string
		noMatch   []string
	}{
		{"tests/csapi", "^(TestLogin|TestRegistration)$", []string{"TestLogin", "TestRegistration"}, []string{"TestLoginX", "TestFed", "XTestLogin"}},
		{"tests", "^(TestFed)$", []string{"TestFed"}, []string{"TestFederation"}},
		{"tests/msc2836", "", nil, nil},
	}
	for _, tt := range tests {
		got := pl.RunPattern(tt.pkg)
		if got != tt.want {
			t.Errorf("RunPattern(%s) = %q, want %q", tt.pkg, got, tt.want)
			continue
		}
		if got == "" {
			continue
		}
		re := regexp.MustCompile(got)
		for _, m := range tt.match {
			if !re.MatchString(m) {
				t.Errorf("%q does not match %s", got, m)
			}
		}
		for _, m := range tt.noMatch {
			if re.MatchString(m) {
				t.Errorf("%q matches %s", got, m)
			}
		}
	}
	if got, want := pl.Packages(), []string{"tests", "tests/csapi"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Packages() = %v, want %v", got, want)
	}
}
