package e2ee

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		// The examples of the spec's appendix "Canonical JSON".
		{`{}`, `{}`},
		{`{"one": 1, "two": "Two"}`, `{"one":1,"two":"Two"}`},
		{`{"b": "2", "a": "1"}`, `{"a":"1","b":"2"}`},
		{`{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}`,
			`{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{`{"a": "日本語"}`, `{"a":"日本語"}`},
		{`{"本": 2, "日": 1}`, `{"日":1,"本":2}`},
		{`{"a": "\u65E5"}`, `{"a":"日"}`},
		{`{"a": null}`, `{"a":null}`},
		{`{"a": -1}`, `{"a":-1}`},
		// Escapes: only the shortest forms, everything else literal.
		{`{"a": "\u0000\u001f\b\f\n\r\t\"\\\/"}`, `{"a":"\u0000\u001f\b\f\n\r\t\"\\/"}`},
		{`{"a": "<&>\u2028"}`, "{\"a\":\"<&>\u2028\"}"},
		{`[3, [true, false], {"z": 0, "": []}]`, `[3,[true,false],{"":[],"z":0}]`},
	} {
		got, err := canonical([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
		// gomatrixserverlib's encoder (the roomserver's reference) agrees.
		if ref, err := gmsl.CanonicalJSON([]byte(tc.in)); err != nil || string(ref) != tc.want {
			t.Errorf("gmsl disagrees on %s: %s %v", tc.in, ref, err)
		}
	}
}

func TestVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	base := func() map[string]any {
		return map[string]any{"key": "k", "unsigned": map[string]any{"x": 1}, "n": 5}
	}
	signed := signWith(t, base(), "@u:hs", "ed25519:D", priv)
	key := b64(pub)
	for _, tc := range []struct {
		name          string
		obj           map[string]any
		signer, keyID string
		key           string
		present, good bool
	}{
		{"valid", signed, "@u:hs", "ed25519:D", key, true, true},
		{"unsigned is not covered", func() map[string]any {
			o := signWith(t, base(), "@u:hs", "ed25519:D", priv)
			o["unsigned"] = "changed"
			return o
		}(), "@u:hs", "ed25519:D", key, true, true},
		{"content changed", func() map[string]any { o := signWith(t, base(), "@u:hs", "ed25519:D", priv); o["n"] = 6; return o }(), "@u:hs", "ed25519:D", key, true, false},
		{"other key signed", signWith(t, base(), "@u:hs", "ed25519:D", other), "@u:hs", "ed25519:D", key, true, false},
		{"no such signer", signed, "@v:hs", "ed25519:D", key, false, false},
		{"no such key ID", signed, "@u:hs", "ed25519:E", key, false, false},
		{"bad public key", signed, "@u:hs", "ed25519:D", "short", true, false},
		{"bad signature encoding", map[string]any{"key": "k", "signatures": map[string]any{"@u:hs": map[string]any{"ed25519:D": "!!"}}}, "@u:hs", "ed25519:D", key, true, false},
	} {
		obj, err := parseObject(raw(t, tc.obj))
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := signaturesOf(obj)
		if err != nil {
			t.Fatal(err)
		}
		present, good := verify(obj, sigs, tc.signer, tc.keyID, tc.key)
		if present != tc.present || good != tc.good {
			t.Errorf("%s: present=%v valid=%v, want %v %v", tc.name, present, good, tc.present, tc.good)
		}
	}
}

func TestDecodeBase64AndIDs(t *testing.T) {
	k := make([]byte, 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{b64(k), true},
		{b64(k) + "=", true}, // padded input is accepted
		{b64(k[:31]), false},
		{b64(append(k, 0)), false},
		{"not base64!", false},
		{"", false},
	} {
		if _, ok := publicKey(tc.in); ok != tc.ok {
			t.Errorf("publicKey(%q) = %v, want %v", tc.in, ok, tc.ok)
		}
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"@a:hs", true}, {"@a:hs:8448", true}, {"a:hs", false}, {"@:hs", false}, {"@a", false}, {"@a:", false},
		{"@a\x00:hs", false}, {"@" + string(make([]byte, 300)) + ":hs", false},
	} {
		if got := validUserID(tc.in); got != tc.ok {
			t.Errorf("validUserID(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}
