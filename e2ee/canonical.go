package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"myelin/internal/canonicaljson"
)

// Signed JSON (spec: appendices, "Signing JSON"): a signature covers the
// object's Canonical JSON without its "signatures" and "unsigned" members.
// Keys are verified here, at upload, so a key object the server hands out
// is one its device (or its user's master key) really signed.

// object is a decoded JSON object whose values stay raw.
type object map[string]json.RawMessage

// parseObject decodes a JSON object that must be valid Canonical JSON
// input (no floats, no duplicate keys, integers within range).
func parseObject(raw []byte) (object, error) {
	if err := canonicaljson.ValidateObject(raw); err != nil {
		return nil, err
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	return o, nil
}

// canonical encodes raw JSON as Canonical JSON: object keys sorted by
// their UTF-8 bytes, no insignificant whitespace, strings with the
// shortest escapes. raw must have passed canonicaljson.Validate, so numbers
// are integers and are copied as written.
func canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return appendCanonical(nil, v)
}

func appendCanonical(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case json.Number:
		return append(b, x...), nil
	case string:
		return appendString(b, x), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendCanonical(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // Go compares strings bytewise: UTF-8 byte order
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendCanonical(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("canonical json: unexpected %T", v)
}

// appendString writes s with Canonical JSON's escapes: \" \\ \b \f \n \r
// \t, \u00XX (lowercase hex) for other control characters, and every
// other character as its UTF-8 bytes.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// signedBytes is what a signature on o covers: o's Canonical JSON without
// "signatures" and "unsigned".
func signedBytes(o object) ([]byte, error) {
	c := make(object, len(o))
	for k, v := range o {
		if k != "signatures" && k != "unsigned" {
			c[k] = v
		}
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return canonical(raw)
}

// encodeObject is o as Canonical JSON.
func encodeObject(o object) ([]byte, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	return canonical(raw)
}

// signatures is the "signatures" member: user ID → key ID → signature.
type signatures map[string]map[string]string

// signaturesOf decodes o's "signatures" member (absent or null: empty;
// clients serialise an empty signature map as null).
func signaturesOf(o object) (signatures, error) {
	raw, ok := o["signatures"]
	if !ok || string(raw) == "null" {
		return signatures{}, nil
	}
	var s signatures
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return nil, errors.New("signatures must map user IDs to maps of key IDs to strings")
	}
	return s, nil
}

// decodeBase64 decodes unpadded base64, accepting padding too (the spec's
// appendix asks decoders to be lenient about it).
func decodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// publicKey decodes an unpadded-base64 32-byte key (ed25519 or curve25519).
func publicKey(s string) ([]byte, bool) {
	b, err := decodeBase64(s)
	return b, err == nil && len(b) == 32
}

// verify checks the signature of o by signer's key keyID, an ed25519
// public key in unpadded base64. It reports whether such a signature is
// present and whether it is valid.
func verify(o object, sigs signatures, signer, keyID, key string) (present, valid bool) {
	sig, ok := sigs[signer][keyID]
	if !ok {
		return false, false
	}
	pub, ok := publicKey(key)
	if !ok {
		return true, false
	}
	raw, err := decodeBase64(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return true, false
	}
	msg, err := signedBytes(o)
	if err != nil {
		return true, false
	}
	return true, ed25519.Verify(ed25519.PublicKey(pub), msg, raw)
}

// stringMember decodes a string member of o; ok is false when it is
// missing or not a string.
func stringMember(o object, name string) (string, bool) {
	raw, ok := o[name]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// validID reports whether s is a reasonable identifier: 1–255 bytes of
// UTF-8 without control characters.
func validID(s string) bool {
	if s == "" || len(s) > 255 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
