package serverkeys

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateIsStable(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.KeyID != second.KeyID || !first.SigningKey.Equal(second.SigningKey) || !bytes.Equal(first.TokenSecret, second.TokenSecret) {
		t.Fatal("secrets changed between loads")
	}
	msg := []byte("canonical json")
	if !ed25519.Verify(first.SigningKey.Public().(ed25519.PublicKey), msg, ed25519.Sign(second.SigningKey, msg)) {
		t.Fatal("reloaded key does not verify")
	}
	for _, name := range []string{signingKeyFile, tokenSecretFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
}

func TestDistinctPerDataDir(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a.SigningKey.Equal(b.SigningKey) || bytes.Equal(a.TokenSecret, b.TokenSecret) {
		t.Fatal("two data directories got the same secrets")
	}
}

func TestRejectsCorruptFiles(t *testing.T) {
	cases := []struct {
		name, file, content string
	}{
		{"signing key not PEM", signingKeyFile, "ed25519 abc notbase64"},
		{"signing key wrong type", signingKeyFile, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
		{"signing key short seed", signingKeyFile, "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:a\n\nAAAA\n-----END MATRIX PRIVATE KEY-----\n"},
		{"signing key no id", signingKeyFile, "-----BEGIN MATRIX PRIVATE KEY-----\n\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END MATRIX PRIVATE KEY-----\n"},
		{"short token secret", tokenSecretFile, "c2hvcnQ=\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreate(dir); err == nil {
				t.Fatal("corrupt file accepted")
			}
		})
	}
}
