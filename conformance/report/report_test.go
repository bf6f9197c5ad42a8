package report

import (
	"strings"
	"testing"
	"time"

	"myelin/conformance/results"
)

func TestAreaOf(t *testing.T) {
	tests := []struct {
		pkg, test, want string
	}{
		{"tests/csapi", "TestRegistration/parallel/x", "accounts"},
		{"tests/csapi", "TestLogin", "accounts"},
		{"tests/csapi", "TestChangePasswordPushers", "accounts"},
		{"tests/csapi", "TestProfileDisplayName", "profile"},
		{"tests/csapi", "TestRoomCreate", "rooms"},
		{"tests/csapi", "TestRoomMessagesLazyLoading", "messages"},
		{"tests/csapi", "TestSyncFilter", "sync"},
		{"tests/csapi", "TestUploadKey", "e2ee"},
		{"tests/csapi", "TestContent", "media"},
		{"tests/csapi", "TestTyping", "ephemeral"},
		{"tests/csapi", "TestVersionStructure", "server"},
		{"tests/csapi", "TestAddAccountData", "account-data"},
		{"tests", "TestFederationThumbnail", "federation"},
		{"tests", "TestInboundFederationKeys", "federation"},
		{"tests", "TestKnocking", "knock-restricted"},
		{"tests", "TestClientSpacesSummary", "spaces"},
		{"tests/msc3902", "TestPartialStateJoin", "msc3902"},
		{"tests/msc9999", "TestNew", "msc9999"},
		{"tests/csapi", "TestSomethingElse", "other"},
		{"jssdk", "TestSmoke/register", "jssdk"},
	}
	for _, tt := range tests {
		if got := AreaOf(tt.pkg, tt.test).Slug; got != tt.want {
			t.Errorf("AreaOf(%s, %s) = %s, want %s", tt.pkg, tt.test, got, tt.want)
		}
	}
}

func TestReasons(t *testing.T) {
	file := "# comment\n\n^rooms \tneeds rooms (issue 4)\nTestSync \tneeds sync (issue 5)\n^federation tests \tfederation not built\n" +
		"/keys/upload returned non-2xx code: 404\tneeds E2EE keys\n"
	rs, err := ReadReasons(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pkg, test, firstError, want string
	}{
		{"tests/csapi", "TestRoomCreate/sub", "", "needs rooms (issue 4)"},
		{"tests/csapi", "TestSync", "", "needs sync (issue 5)"},
		{"tests/csapi", "TestSyncFilter", "", unexplained},
		{"tests", "TestOutboundFederationSend", "", "federation not built"},
		{"tests/csapi", "TestLogin", "", unexplained},
		{"tests/csapi", "TestUploadKey", "CSAPI.MustDo POST http://x/_matrix/client/v3/keys/upload returned non-2xx code: 404 Not Found", "needs E2EE keys"},
		{"tests/csapi", "TestUploadKey", "CSAPI.MustDo POST http://x/_matrix/client/v3/keys/upload returned non-2xx code: 400", unexplained},
	}
	for _, tt := range tests {
		if got := rs.For(AreaOf(tt.pkg, tt.test), tt.pkg, tt.test, tt.firstError); got != tt.want {
			t.Errorf("For(%s %s) = %q, want %q", tt.pkg, tt.test, got, tt.want)
		}
	}
}

func TestReadReasonsErrors(t *testing.T) {
	for name, in := range map[string]string{
		"no tab":     "^rooms needs rooms\n",
		"no reason":  "^rooms\t  \n",
		"bad regexp": "([\treason\n",
	} {
		if _, err := ReadReasons(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
}

func TestSplice(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty doc", "", BeginMarker + "\nGEN\n" + EndMarker + "\n"},
		{"no markers", "# Title\nintro", "# Title\nintro\n" + BeginMarker + "\nGEN\n" + EndMarker + "\n"},
		{"replace", "# T\n" + BeginMarker + "\nold\nstuff\n" + EndMarker + "\n## After\n",
			"# T\n" + BeginMarker + "\nGEN\n" + EndMarker + "\n## After\n"},
	}
	for _, tt := range tests {
		if got := Splice(tt.doc, "GEN\n"); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	rs := []results.Result{
		{Package: "tests/csapi", Test: "TestLogin", Outcome: results.Pass},
		{Package: "tests/csapi", Test: "TestLogin/a", Outcome: results.Pass},
		{Package: "tests/csapi", Test: "TestRoomCreate", Outcome: results.Fail},
		{Package: "tests/csapi", Test: "TestRoomCreate/a", Outcome: results.Fail, Reason: "a failed because b failed first", Seq: 9},
		{Package: "tests/csapi", Test: "TestRoomCreate/b", Outcome: results.Fail, Reason: "POST /createRoom => 404 | M_UNRECOGNIZED", Seq: 5},
		{Package: "tests/csapi", Test: "TestRoomCreate/c", Outcome: results.Pass, Seq: 7},
		{Package: "tests/csapi", Test: "TestUserDirectory", Outcome: results.Skip, Reason: "OldDeploy(clean_hs): Docker-only"},
		{Package: "tests", Test: "TestFederationX", Outcome: results.Fail, Reason: "no federation"},
	}
	reasons, err := ReadReasons(strings.NewReader("^rooms \tneeds rooms (issue 4)\n"))
	if err != nil {
		t.Fatal(err)
	}
	md := Markdown(Run{
		Results:           rs,
		Packages:          []results.PackageResult{{Package: "tests/msc3902", Outcome: results.Fail, Tail: []string{"deployer: boom"}}},
		Reasons:           reasons,
		ComplementVersion: "v0.0.0-x",
		MyelinRevision:    "abc123",
		Started:           time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Duration:          90 * time.Second,
	})
	for _, want := range []string{
		"Last full run: 2026-01-02 03:04 UTC, Myelin `abc123`, Complement `v0.0.0-x`, took 1m30s.",
		"**tests/csapi: 1 of 3 top-level tests pass (33.3%).**",
		"| tests/csapi | 1 | 1 | 1 | 3 | 3 | 1 |",
		"| tests | 0 | 1 | 0 | 0 | 1 | 0 |",
		"| **total** | 1 | 2 | 1 | 3 | 4 | 1 |",
		"Package tests/msc3902 failed before running any test",
		"deployer: boom",
		"| rooms | room creation, membership, state, aliases, power levels | 0 | 1 | 0 | 1 | 3 | 0 |",
		"#### needs rooms (issue 4) — 1",
		`| TestRoomCreate | tests/csapi | rooms | 1/3 | POST /createRoom => 404 \| M_UNRECOGNIZED |`,
		"#### " + unexplained + " — 1",
		"| TestFederationX | tests | federation | – | no federation |",
		"| TestUserDirectory | tests/csapi | OldDeploy(clean_hs): Docker-only |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
}

func TestCellTruncates(t *testing.T) {
	long := strings.Repeat("é", maxErrorLen+10)
	got := cell(long)
	if r := []rune(got); len(r) != maxErrorLen+1 || r[len(r)-1] != '…' {
		t.Errorf("cell kept %d runes", len(r))
	}
	if got := cell("a\nb|c"); got != `a b\|c` {
		t.Errorf("cell = %q", got)
	}
}
