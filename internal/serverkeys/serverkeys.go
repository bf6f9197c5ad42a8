// Package serverkeys owns the server's long-lived secrets in the data
// directory: the ed25519 signing key (federation and event signatures) and
// the token secret (HMAC key for stored token hashes and server-issued
// nonces). Both are generated on first start and never shipped in the repo.
package serverkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	signingKeyFile  = "signing.key"
	tokenSecretFile = "token.secret"
	pemType         = "MATRIX PRIVATE KEY"
)

// Keys are the server's secrets.
type Keys struct {
	// KeyID is "ed25519:<id>", the form gomatrixserverlib and the federation
	// API use to name a signing key.
	KeyID      string
	SigningKey ed25519.PrivateKey
	// TokenSecret is 32 random bytes.
	TokenSecret []byte
}

// LoadOrCreate reads the secrets from dir, generating any that are missing.
// Files are created with mode 0600 and O_EXCL, so two processes starting at
// once cannot overwrite each other's key.
func LoadOrCreate(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	k := &Keys{}
	var err error
	if k.KeyID, k.SigningKey, err = loadOrCreateSigningKey(filepath.Join(dir, signingKeyFile)); err != nil {
		return nil, err
	}
	if k.TokenSecret, err = loadOrCreateSecret(filepath.Join(dir, tokenSecretFile)); err != nil {
		return nil, err
	}
	return k, nil
}

// The signing key is stored as a PEM block holding the 32-byte ed25519 seed
// with the key ID in a header — the layout Go homeservers built on
// gomatrixserverlib use, so keys can move between them.
func loadOrCreateSigningKey(path string) (string, ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSigningKey(path); err != nil {
			return "", nil, err
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemType {
		return "", nil, fmt.Errorf("signing key %s: not a %q PEM block", path, pemType)
	}
	keyID := block.Headers["Key-ID"]
	if !strings.HasPrefix(keyID, "ed25519:") || len(keyID) == len("ed25519:") {
		return "", nil, fmt.Errorf("signing key %s: missing or malformed Key-ID header", path)
	}
	if len(block.Bytes) != ed25519.SeedSize {
		return "", nil, fmt.Errorf("signing key %s: seed is %d bytes, want %d", path, len(block.Bytes), ed25519.SeedSize)
	}
	return keyID, ed25519.NewKeyFromSeed(block.Bytes), nil
}

func createSigningKey(path string) error {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	idBytes := make([]byte, 6)
	if _, err := rand.Read(idBytes); err != nil {
		return fmt.Errorf("generate key id: %w", err)
	}
	// Key IDs are restricted to [a-zA-Z0-9_]; raw URL base64 without - is close
	// enough once the two non-alphanumerics are replaced.
	id := strings.NewReplacer("-", "a", "_", "b").Replace(base64.RawURLEncoding.EncodeToString(idBytes))
	block := &pem.Block{Type: pemType, Headers: map[string]string{"Key-ID": "ed25519:" + id}, Bytes: seed}
	return writeExclusive(path, pem.EncodeToMemory(block))
}

func loadOrCreateSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("generate token secret: %w", err)
		}
		if err := writeExclusive(path, []byte(base64.StdEncoding.EncodeToString(secret)+"\n")); err != nil {
			return nil, err
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read token secret: %w", err)
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("token secret %s: want base64 of at least 32 bytes", path)
	}
	return secret, nil
}

// writeExclusive creates path with data, failing if it exists; losing a race
// to another process is fine (the caller re-reads the winner's file).
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}
