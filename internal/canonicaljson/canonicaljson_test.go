package canonicaljson

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty object", `{}`, true},
		{"nested", `{"a":[1,2,{"b":null}],"c":true,"d":false,"e":"x"}`, true},
		{"whitespace", " \n{ \"a\" : 1 }\t", true},
		{"max safe", `{"n":9007199254740991}`, true},
		{"min safe", `{"n":-9007199254740991}`, true},
		{"zero", `{"n":0}`, true},
		{"unicode", `{"k":"héllo ☃ 𝄞"}`, true},
		{"escapes", `{"k":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud834\udd1e"}`, true},
		{"scalar top level", `42`, true},

		{"above max", `{"n":9007199254740992}`, false},
		{"below min", `{"n":-9007199254740992}`, false},
		{"huge", `{"n":123456789012345678901234567890}`, false},
		{"float", `{"n":1.5}`, false},
		{"float zero", `{"n":0.0}`, false},
		{"exponent", `{"n":1e5}`, false},
		{"upper exponent", `{"n":1E5}`, false},
		{"zero exponent", `{"n":0e1}`, false},
		{"negative zero", `{"n":-0}`, false},
		{"leading zero", `{"n":01}`, false},
		{"NaN", `{"n":NaN}`, false},
		{"Infinity", `{"n":Infinity}`, false},
		{"-Infinity", `{"n":-Infinity}`, false},
		{"duplicate key", `{"a":1,"a":2}`, false},
		{"duplicate via escape", `{"a":1,"\u0061":2}`, false},
		{"nested duplicate", `{"x":{"k":1,"k":1}}`, false},
		{"invalid utf8", "{\"k\":\"\xff\"}", false},
		{"control char", "{\"k\":\"a\x01\"}", false},
		{"bad escape", `{"k":"\x"}`, false},
		{"short unicode escape", `{"k":"\u12"}`, false},
		{"trailing comma", `{"a":1,}`, false},
		{"trailing data", `{} {}`, false},
		{"unterminated", `{"a":1`, false},
		{"unterminated string", `{"a":"x`, false},
		{"single quotes", `{'a':1}`, false},
		{"empty", ``, false},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate([]byte(tt.in))
			if tt.ok && err != nil {
				t.Fatalf("Validate(%q) = %v, want nil", tt.in, err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatalf("Validate(%q) = nil, want error", tt.in)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v does not match ErrInvalid", err)
				}
			}
		})
	}
}

func TestDuplicateDetectionManyKeys(t *testing.T) {
	// Past 16 keys the scanner switches from a linear scan to a map; both
	// paths must agree.
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 40; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1`)
	}
	unique := b.String() + "}"
	if err := Validate([]byte(unique)); err != nil {
		t.Fatalf("unique keys rejected: %v", err)
	}
	dup := b.String() + `,"kaa":2}`
	if err := Validate([]byte(dup)); err == nil {
		t.Fatal("duplicate among many keys accepted")
	}
	dupEsc := b.String() + `,"\u006baa":2}`
	if err := Validate([]byte(dupEsc)); err == nil {
		t.Fatal("escaped duplicate among many keys accepted")
	}
	lone := `{"\ud800":1,"\ud801":2}`
	if err := Validate([]byte(lone)); err != nil {
		t.Fatalf("distinct lone surrogates treated as duplicates: %v", err)
	}
}

func TestValidateObject(t *testing.T) {
	for _, in := range []string{`[]`, `1`, `"s"`, `null`, ``} {
		if err := ValidateObject([]byte(in)); err == nil {
			t.Errorf("ValidateObject(%q) = nil, want error", in)
		}
	}
	if err := ValidateObject([]byte(` {"a":1}`)); err != nil {
		t.Errorf("ValidateObject(object) = %v", err)
	}
}

func BenchmarkValidate(b *testing.B) {
	doc := []byte(`{"msgtype":"m.text","body":"Hello from the front desk, the 3pm appointment is confirmed.","format":"org.matrix.custom.html","formatted_body":"<b>Hello</b>","m.mentions":{"user_ids":["@vet:clinic.example"]},"n":12345}`)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(doc); err != nil {
			b.Fatal(err)
		}
	}
}
