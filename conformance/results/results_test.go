package results

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// stream is test2json output of a package with a failing subtest (Complement
// red error line), a skipped subtest, parallel subtests and a test that
// started but never finished.
const stream = `{"Action":"start","Package":"tests/csapi"}
{"Action":"run","Package":"tests/csapi","Test":"TestA"}
{"Action":"output","Package":"tests/csapi","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"run","Package":"tests/csapi","Test":"TestA/sub_one"}
{"Action":"output","Package":"tests/csapi","Test":"TestA/sub_one","Output":"    a_test.go:3: hello\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestA/sub_one","Output":"    a_test.go:3: \u001b[31mbad thing 3\u001b[39m\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestA/sub_one","Output":"    a_test.go:4: \u001b[31msecond error\u001b[39m\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestA/sub_one","Output":"--- FAIL: TestA/sub_one (0.00s)\n"}
{"Action":"fail","Package":"tests/csapi","Test":"TestA/sub_one","Elapsed":0.25}
{"Action":"run","Package":"tests/csapi","Test":"TestA/s2"}
{"Action":"output","Package":"tests/csapi","Test":"TestA/s2","Output":"    a_test.go:3: no docker here\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestA/s2","Output":"--- SKIP: TestA/s2 (0.00s)\n"}
{"Action":"skip","Package":"tests/csapi","Test":"TestA/s2","Elapsed":0}
{"Action":"output","Package":"tests/csapi","Test":"TestA","Output":"--- FAIL: TestA (0.00s)\n"}
{"Action":"fail","Package":"tests/csapi","Test":"TestA","Elapsed":1.5}
{"Action":"run","Package":"tests/csapi","Test":"TestB"}
{"Action":"run","Package":"tests/csapi","Test":"TestB/par/x"}
{"Action":"pause","Package":"tests/csapi","Test":"TestB/par/x"}
{"Action":"cont","Package":"tests/csapi","Test":"TestB/par/x"}
{"Action":"pass","Package":"tests/csapi","Test":"TestB/par/x","Elapsed":0}
{"Action":"pass","Package":"tests/csapi","Test":"TestB","Elapsed":0.5}
{"Action":"run","Package":"tests/csapi","Test":"TestD"}
{"Action":"output","Package":"tests/csapi","Test":"TestD","Output":"    client.go:685: [CSAPI] POST hs1/_matrix/client/v3/register => 500 error\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestD","Output":"    d_test.go:9: Alice joins the room\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestD","Output":"    d_test.go:10: make_join failed: connection refused\n"}
{"Action":"output","Package":"tests/csapi","Test":"TestD","Output":"    test_package.go:617: server logs of deployment 3 (error lines below)\n"}
{"Action":"fail","Package":"tests/csapi","Test":"TestD","Elapsed":0.1}
{"Action":"run","Package":"tests/csapi","Test":"TestC"}
not json: panic: test timed out after 1s
{"Action":"output","Package":"tests/csapi","Output":"FAIL\n"}
{"Action":"fail","Package":"tests/csapi","Elapsed":2}
`

func TestCollector(t *testing.T) {
	c := NewCollector()
	var tops []string
	c.OnTopLevel = func(r Result) { tops = append(tops, r.Test+"="+string(r.Outcome)) }
	if err := c.Read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	got := c.Results()
	want := []Result{
		{Package: "tests/csapi", Test: "TestA", Outcome: Fail, Elapsed: 1500e6, Seq: 0},
		{Package: "tests/csapi", Test: "TestA/s2", Outcome: Skip, Reason: "no docker here", Seq: 2},
		{Package: "tests/csapi", Test: "TestA/sub_one", Outcome: Fail, Reason: "bad thing 3", Elapsed: 250e6, Seq: 1},
		{Package: "tests/csapi", Test: "TestB", Outcome: Pass, Elapsed: 500e6, Seq: 3},
		{Package: "tests/csapi", Test: "TestB/par/x", Outcome: Pass, Seq: 4},
		{Package: "tests/csapi", Test: "TestC", Outcome: Fail, Reason: "did not finish (test binary timed out or crashed)", Seq: 6},
		{Package: "tests/csapi", Test: "TestD", Outcome: Fail, Reason: "make_join failed: connection refused", Elapsed: 100e6, Seq: 5},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results:\n got %+v\nwant %+v", got, want)
	}
	if want := []string{"TestA=fail", "TestB=pass", "TestD=fail"}; !reflect.DeepEqual(tops, want) {
		t.Errorf("top-level callbacks = %v, want %v", tops, want)
	}
	pkgs := c.Packages()
	if len(pkgs) != 1 || pkgs[0].Outcome != Fail || pkgs[0].Package != "tests/csapi" {
		t.Fatalf("packages = %+v", pkgs)
	}
	if tail := strings.Join(pkgs[0].Tail, "\n"); !strings.Contains(tail, "panic: test timed out") {
		t.Errorf("package tail lacks the non-JSON line: %q", tail)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := []Result{
		{Package: "tests", Test: "TestX", Outcome: Fail, Reason: "room !abc:hs1 not found", Elapsed: 3},
		{Package: "tests", Test: "TestY", Outcome: Skip, Reason: "needs Docker <blueprint>"},
		{Package: "tests", Test: "TestZ", Outcome: Pass},
	}
	var buf bytes.Buffer
	if err := WriteRecord(&buf, in); err != nil {
		t.Fatal(err)
	}
	wantText := `{"package":"tests","test":"TestX","result":"fail"}
{"package":"tests","test":"TestY","result":"skip","reason":"needs Docker <blueprint>"}
{"package":"tests","test":"TestZ","result":"pass"}
`
	if buf.String() != wantText {
		t.Errorf("record:\n%s\nwant:\n%s", buf.String(), wantText)
	}
	out, err := ReadRecord(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{Package: "tests", Test: "TestX", Outcome: Fail},
		{Package: "tests", Test: "TestY", Outcome: Skip, Reason: "needs Docker <blueprint>"},
		{Package: "tests", Test: "TestZ", Outcome: Pass},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("read back %+v, want %+v", out, want)
	}
}

func TestReadRecordRejectsGarbage(t *testing.T) {
	if _, err := ReadRecord(strings.NewReader("{not json")); err == nil {
		t.Error("ReadRecord accepted broken JSON")
	}
}

func TestTopLevelAndKey(t *testing.T) {
	tests := []struct {
		test, top string
	}{
		{"TestA", "TestA"},
		{"TestA/b", "TestA"},
		{"TestA/b/c_d", "TestA"},
	}
	for _, tt := range tests {
		r := Result{Package: "tests/csapi", Test: tt.test}
		if got := r.TopLevel(); got != tt.top {
			t.Errorf("TopLevel(%q) = %q, want %q", tt.test, got, tt.top)
		}
		if got := r.Key(); got != "tests/csapi "+tt.test {
			t.Errorf("Key(%q) = %q", tt.test, got)
		}
	}
}

func TestWriteEventsRoundTrip(t *testing.T) {
	in := []Result{
		{Package: "jssdk", Test: "TestSmoke", Outcome: Fail, Reason: "MatrixError: [404]"},
		{Package: "jssdk", Test: "TestSmoke/register", Outcome: Pass},
		{Package: "jssdk", Test: "TestSmoke/create_room", Outcome: Fail, Reason: "MatrixError: [404]"},
		{Package: "jssdk", Test: "TestSmoke/join", Outcome: Skip, Reason: "an earlier step failed"},
	}
	var buf bytes.Buffer
	if err := WriteEvents(&buf, in); err != nil {
		t.Fatal(err)
	}
	c := NewCollector()
	if err := c.Read(&buf); err != nil {
		t.Fatal(err)
	}
	got := c.Results()
	for i := range got {
		got[i].Seq = 0
	}
	want := append([]Result(nil), in...)
	Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if p, ok := c.Package("jssdk"); !ok || p.Outcome != Fail || p.Ends != 1 {
		t.Errorf("package verdict %+v", p)
	}
}
