package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// errTooLarge is returned by stage when the body exceeds its limit.
var errTooLarge = errors.New("media: content exceeds the size limit")

// sha256Pattern is the only shape a file name in the store can have.
var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// fileStore is the content-addressed file store: a file's name is the
// SHA-256 of its bytes (<root>/ab/cd/abcd…), so identical content is stored
// once and a name can only ever come from hashing, never from a request.
// Files appear under their final name only complete: they are written to
// <root>/tmp, fsynced, then renamed (atomic on one filesystem).
type fileStore struct {
	root string
}

func newFileStore(root string) (*fileStore, error) {
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	// Temp files left by a crash are never referenced: clear them.
	leftovers, _ := filepath.Glob(filepath.Join(root, "tmp", "upload-*"))
	for _, f := range leftovers {
		_ = os.Remove(f)
	}
	return &fileStore{root: root}, nil
}

// path is where the file with this hash lives; "" if sha is not a hash.
func (s *fileStore) path(sha string) string {
	if !sha256Pattern.MatchString(sha) {
		return ""
	}
	return filepath.Join(s.root, sha[0:2], sha[2:4], sha)
}

// open opens the file with this hash for reading.
func (s *fileStore) open(sha string) (*os.File, error) {
	p := s.path(sha)
	if p == "" {
		return nil, fmt.Errorf("media store: %q is not a sha256", sha)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	return f, nil
}

// staged is content written to a temp file and hashed, not yet under its
// final name.
type staged struct {
	store *fileStore
	tmp   string
	SHA   string
	Size  int64
}

// stage copies at most limit bytes of r into a temp file, hashing them;
// more than limit is errTooLarge (and nothing is kept).
func (s *fileStore) stage(r io.Reader, limit int64) (*staged, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "upload-*")
	if err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	st := &staged{store: s, tmp: f.Name()}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = errTooLarge
	}
	if err == nil {
		// Durable before it gets its final name: a crash after the rename
		// must not leave a short file under a hash it does not match.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("media store: %w", cerr)
	}
	if err != nil {
		st.discard()
		return nil, err
	}
	st.SHA, st.Size = hex.EncodeToString(h.Sum(nil)), n
	return st, nil
}

// commit moves the staged file to its content address; when a file with
// that hash exists already (identical bytes) the copy is dropped instead.
// The caller holds the store lock for SHA.
func (st *staged) commit() error {
	final := st.store.path(st.SHA)
	if _, err := os.Stat(final); err == nil {
		st.discard()
		return nil
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	if err := os.Rename(st.tmp, final); err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	st.tmp = ""
	// The rename is durable once the directory entry is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// discard removes the temp file if it is still there.
func (st *staged) discard() {
	if st.tmp != "" {
		_ = os.Remove(st.tmp)
		st.tmp = ""
	}
}

// remove deletes the file with this hash (the caller checked that nothing
// references it, holding the lock for sha).
func (s *fileStore) remove(sha string) {
	if p := s.path(sha); p != "" {
		_ = os.Remove(p)
	}
}
