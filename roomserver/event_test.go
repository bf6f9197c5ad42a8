package roomserver

import "testing"

func TestPDUFields(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		pdu                  string
		wantRedacts          bool
		content, ts, redacts string
	}{
		{name: "canonical order", pdu: `{"auth_events":[],"content":{"body":"hi"},"depth":3,"origin_server_ts":17,"redacts":"$x","type":"m.room.message"}`,
			content: `{"body":"hi"}`, ts: `17`},
		{name: "redaction, top-level redacts", pdu: `{"content":{},"origin_server_ts":5,"redacts":"$t","type":"m.room.redaction"}`,
			wantRedacts: true, content: `{}`, ts: `5`, redacts: `"$t"`},
		{name: "redaction without top-level redacts", pdu: `{"content":{"redacts":"$t"},"origin_server_ts":5}`,
			wantRedacts: true, content: `{"redacts":"$t"}`, ts: `5`},
		{name: "ts before content", pdu: `{"origin_server_ts":9,"content":{"a":[1,{"content":2}]}}`,
			content: `{"a":[1,{"content":2}]}`, ts: `9`},
		{name: "first of duplicate keys", pdu: `{"content":{"n":1},"content":{"n":2},"origin_server_ts":1}`,
			content: `{"n":1}`, ts: `1`},
		{name: "missing keys", pdu: `{"type":"x"}`},
		{name: "not an object", pdu: `[1,2]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := pduFields([]byte(tc.pdu), tc.wantRedacts)
			if f.content.Raw != tc.content || f.ts.Raw != tc.ts || f.redacts.Raw != tc.redacts {
				t.Fatalf("content %q ts %q redacts %q, want %q %q %q", f.content.Raw, f.ts.Raw, f.redacts.Raw, tc.content, tc.ts, tc.redacts)
			}
		})
	}
}

func TestSubslice(t *testing.T) {
	pdu := []byte(`{"content":{"body":"hi"},"origin_server_ts":1}`)
	f := pduFields(pdu, false)
	got := subslice(pdu, f.content)
	if string(got) != `{"body":"hi"}` {
		t.Fatalf("content %s", got)
	}
	if cap(got) != len(got) {
		t.Fatalf("cap %d > len %d: an append could overwrite the PDU", cap(got), len(got))
	}
	_ = append(got, 'x')
	if string(pdu) != `{"content":{"body":"hi"},"origin_server_ts":1}` {
		t.Fatalf("PDU changed: %s", pdu)
	}
}
