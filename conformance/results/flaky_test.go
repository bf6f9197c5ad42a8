package results

import (
	"strings"
	"testing"
)

func TestFlakySplit(t *testing.T) {
	f, err := ReadFlaky(strings.NewReader("# known\n\nM_ROOM_IN_USE\troom ID collision bug\n^tests TestNet\tnetwork timing\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := []Result{
		{Package: "tests/csapi", Test: "TestRoomState/x", Outcome: Fail, Reason: `createRoom: {"errcode":"M_ROOM_IN_USE"}`},
		{Package: "tests/csapi", Test: "TestLogin", Outcome: Fail, Reason: "500"},
		{Package: "tests", Test: "TestNetwork", Outcome: Fail, Reason: NotRun},
		{Package: "tests/csapi", Test: "TestNet", Outcome: Fail, Reason: "x"},
	}
	real, flaky := f.Split(reg, reg)
	var gotReal, gotFlaky []string
	for _, r := range real {
		gotReal = append(gotReal, r.Key())
	}
	for _, r := range flaky {
		gotFlaky = append(gotFlaky, r.Key()+": "+r.Reason)
	}
	if strings.Join(gotReal, ",") != "tests/csapi TestLogin,tests/csapi TestNet" {
		t.Errorf("real = %v", gotReal)
	}
	want := `tests/csapi TestRoomState/x: room ID collision bug — createRoom: {"errcode":"M_ROOM_IN_USE"},tests TestNetwork: network timing — did not run`
	if strings.Join(gotFlaky, ",") != want {
		t.Errorf("flaky = %v", gotFlaky)
	}
}

func TestReadFlakyErrors(t *testing.T) {
	for _, in := range []string{"no tab here\n", "x\t \n", "(\treason\n"} {
		if _, err := ReadFlaky(strings.NewReader(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func TestFlakyParents(t *testing.T) {
	f, err := ReadFlaky(strings.NewReader("M_ROOM_IN_USE\troom ID collision bug\n"))
	if err != nil {
		t.Fatal(err)
	}
	all := []Result{
		{Package: "p", Test: "TestA", Outcome: Fail},
		{Package: "p", Test: "TestA/Parallel", Outcome: Fail},
		{Package: "p", Test: "TestA/Parallel/x", Outcome: Fail, Reason: "M_ROOM_IN_USE"},
		{Package: "p", Test: "TestA/Parallel/y", Outcome: Pass},
		{Package: "p", Test: "TestB", Outcome: Fail},
		{Package: "p", Test: "TestB/x", Outcome: Fail, Reason: "M_ROOM_IN_USE"},
		{Package: "p", Test: "TestB/y", Outcome: Fail, Reason: "500 internal error"},
		{Package: "p", Test: "TestC", Outcome: Fail},
	}
	reg := []Result{all[0], all[1], all[4], all[7]}
	real, flaky := f.Split(reg, all)
	var gotReal, gotFlaky []string
	for _, r := range real {
		gotReal = append(gotReal, r.Test)
	}
	for _, r := range flaky {
		gotFlaky = append(gotFlaky, r.Test)
	}
	// TestB has a real failure below it; TestC failed with no subtest
	// explaining it (e.g. its own t.Fatal without a message).
	if strings.Join(gotReal, ",") != "TestB,TestC" || strings.Join(gotFlaky, ",") != "TestA,TestA/Parallel" {
		t.Errorf("real %v, flaky %v", gotReal, gotFlaky)
	}
}
