package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileStore(t *testing.T) {
	root := t.TempDir()
	// A temp file left by a crash is cleared on open.
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp", "upload-crashed"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := newFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", "upload-crashed")); !os.IsNotExist(err) {
		t.Fatalf("leftover temp file not removed: %v", err)
	}
	data := []byte("hello media")
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])

	st, err := s.stage(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if st.SHA != want || st.Size != int64(len(data)) {
		t.Fatalf("staged %s/%d, want %s/%d", st.SHA, st.Size, want, len(data))
	}
	// Not under its final name before commit.
	if _, err := os.Stat(s.path(want)); !os.IsNotExist(err) {
		t.Fatal("file visible before commit")
	}
	if err := st.commit(); err != nil {
		t.Fatal(err)
	}
	if s.path(want) != filepath.Join(root, want[:2], want[2:4], want) {
		t.Fatalf("path %s", s.path(want))
	}
	// Identical content: the second copy is dropped, the file stays.
	st2, err := s.stage(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.commit(); err != nil {
		t.Fatal(err)
	}
	tmps, _ := os.ReadDir(filepath.Join(root, "tmp"))
	if len(tmps) != 0 {
		t.Fatalf("temp files left: %d", len(tmps))
	}
	f, err := s.open(want)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("read %q", got)
	}

	// Over the limit: errTooLarge and no temp file kept.
	if _, err := s.stage(strings.NewReader(strings.Repeat("x", 101)), 100); !errors.Is(err, errTooLarge) {
		t.Fatalf("stage over limit: %v", err)
	}
	tmps, _ = os.ReadDir(filepath.Join(root, "tmp"))
	if len(tmps) != 0 {
		t.Fatalf("temp files left after a refused upload: %d", len(tmps))
	}

	// Only a hex sha256 can name a file.
	for _, bad := range []string{"", "..", "../" + want, want[:63], strings.ToUpper(want), want + "/x", "/etc/passwd", want[:63] + "\x00"} {
		if p := s.path(bad); p != "" {
			t.Errorf("path(%q) = %q", bad, p)
		}
		if f, err := s.open(bad); err == nil {
			f.Close()
			t.Errorf("open(%q) succeeded", bad)
		}
	}
	s.remove(want)
	if _, err := os.Stat(s.path(want)); !os.IsNotExist(err) {
		t.Fatal("file not removed")
	}
}
