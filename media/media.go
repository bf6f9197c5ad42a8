// Package media owns the media repository: the content-addressed file store
// under <data_dir>/media, media IDs and their rows (through storage), the
// upload size limit and per-user quota, asynchronous uploads
// (/media/v1/create then PUT), and thumbnails of PNG, JPEG, GIF and WebP
// images, generated on demand and cached; and URL previews (OpenGraph data
// of pages fetched through the SSRF-safe outbound client, their images
// stored like uploads). HTTP routing lives in clientapi; this package
// returns *apierr.Error values the edge renders.
package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"myelin/config"
	"myelin/internal/apierr"
	"myelin/storage"
)

// Options are the service's dependencies.
type Options struct {
	Config *config.Config // required; must have passed Verify
	DB     *storage.DB    // required
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Fetcher makes the requests of URL previews (an *outbound.Client);
	// nil, or media.url_previews off, leaves /preview_url unserved.
	Fetcher Fetcher
}

// Service is the media repository.
type Service struct {
	cfg        config.Media
	serverName string
	infoURI    string
	db         *storage.Media
	files      *fileStore
	now        func() time.Time
	// locks serialise, per content hash, putting a file in place, writing
	// the row that references it, and deleting an unreferenced file, so a
	// failed upload never deletes a file a concurrent identical upload
	// has just referenced.
	locks [64]sync.Mutex
	// thumbSlots bounds concurrent decodes: each may hold up to
	// MaxThumbnailPixels*4 bytes.
	thumbSlots chan struct{}
	// preview makes URL previews; nil when they are off.
	preview *previewer
}

// New opens (creating if needed) the media store under the data directory.
func New(opts Options) (*Service, error) {
	if opts.Config == nil || opts.DB == nil {
		return nil, errors.New("media: Config and DB are required")
	}
	files, err := newFileStore(filepath.Join(opts.Config.DataDir, "media"))
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	info := opts.Config.Media.QuotaInfoURI
	if info == "" {
		info = opts.Config.PublicBaseURL
	}
	if info == "" {
		info = "https://" + opts.Config.ServerName
	}
	s := &Service{cfg: opts.Config.Media, serverName: opts.Config.ServerName, infoURI: info,
		db: storage.NewMedia(opts.DB), files: files, now: now, thumbSlots: make(chan struct{}, 2)}
	if opts.Config.Media.URLPreviews && opts.Fetcher != nil {
		s.preview = newPreviewer(opts.Fetcher)
	}
	return s, nil
}

// MaxUploadSize is the upload limit /media/config advertises.
func (s *Service) MaxUploadSize() int64 { return s.cfg.MaxUploadSize }

func (s *Service) lock(sha string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sha))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

func (s *Service) mxc(mediaID string) string { return "mxc://" + s.serverName + "/" + mediaID }

// Upload is what a client sends: its bytes, their declared length (-1 if
// unknown), type and optional file name.
type Upload struct {
	Body          io.Reader
	ContentLength int64
	ContentType   string
	Filename      string
}

func tooLarge() *apierr.Error {
	return apierr.TooLarge("Upload exceeds the server's size limit")
}

// overQuota is the spec's M_USER_LIMIT_EXCEEDED (v1.18: "a user may have
// reached their allocated storage quota"), which MUST carry info_uri; the
// upload endpoints list quota among their 403 reasons, so the status is 403.
func (s *Service) overQuota() *apierr.Error {
	return apierr.New(http.StatusForbidden, "M_USER_LIMIT_EXCEEDED", "Upload would exceed your media storage quota").
		With("info_uri", s.infoURI).With("can_upgrade", false)
}

// checkUpload refuses what can be refused before reading the body: a
// declared length over the limit, a quota the declared length would
// exceed, and a file name that is not printable UTF-8.
func (s *Service) checkUpload(ctx context.Context, uploader string, up Upload) error {
	if up.ContentLength > s.cfg.MaxUploadSize {
		return tooLarge()
	}
	if err := CheckFilename(up.Filename); err != nil {
		return err
	}
	if s.cfg.UserQuota > 0 && up.ContentLength > 0 {
		used, err := s.db.Usage(ctx, uploader)
		if err != nil {
			return err
		}
		if used+up.ContentLength > s.cfg.UserQuota {
			return s.overQuota()
		}
	}
	return nil
}

// CheckFilename refuses a file name (from an upload's query or a download
// path) that is not printable UTF-8 of at most 255 bytes. It only ever
// names a download in Content-Disposition, never a file on disk.
func CheckFilename(name string) error {
	if len(name) > 255 || !utf8.ValidString(name) {
		return apierr.InvalidParam("filename must be UTF-8 of at most 255 bytes")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return apierr.InvalidParam("filename must not contain control characters")
		}
	}
	return nil
}

// store writes the body to the file store and runs record (the database
// write referencing it) under the hash's lock; when record fails, the file
// goes again unless something else references it.
func (s *Service) store(ctx context.Context, body io.Reader, record func(sha string, size int64) error) error {
	st, err := s.files.stage(body, s.cfg.MaxUploadSize)
	if errors.Is(err, errTooLarge) {
		return tooLarge()
	}
	if err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	defer st.discard()
	return s.commit(ctx, st, func() error { return record(st.SHA, st.Size) })
}

func (s *Service) commit(ctx context.Context, st *staged, record func() error) error {
	unlock := s.lock(st.SHA)
	defer unlock()
	if err := st.commit(); err != nil {
		return err
	}
	err := record()
	if err != nil {
		// A cancelled request must still clean up.
		ref, rerr := s.db.SHA256Referenced(context.WithoutCancel(ctx), st.SHA)
		if rerr == nil && !ref {
			s.files.remove(st.SHA)
		}
	}
	return err
}

func (s *Service) mapStorageErr(err error) error {
	switch {
	case errors.Is(err, storage.ErrMediaQuota):
		return s.overQuota()
	case errors.Is(err, storage.ErrMediaNotUploader):
		return apierr.Forbidden("This media ID was created by another user")
	case errors.Is(err, storage.ErrConflict):
		return apierr.New(http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")
	case errors.Is(err, storage.ErrNotFound):
		return apierr.NotFound("Unknown or expired media ID")
	}
	return err
}

// Upload stores content uploaded by uploader (a user ID) under a new media
// ID and returns its mxc:// URI.
func (s *Service) Upload(ctx context.Context, uploader string, up Upload) (string, error) {
	if err := s.checkUpload(ctx, uploader, up); err != nil {
		return "", err
	}
	id := newMediaID()
	err := s.store(ctx, up.Body, func(sha string, size int64) error {
		return s.db.InsertMedia(ctx, storage.MediaRecord{Server: s.serverName, MediaID: id, Uploader: uploader,
			ContentType: normaliseContentType(up.ContentType), Filename: up.Filename, Size: size, SHA256: sha,
			CreatedTS: s.now().UnixMilli()}, s.cfg.UserQuota)
	})
	if err != nil {
		return "", s.mapStorageErr(err)
	}
	return s.mxc(id), nil
}

// Create reserves a media ID for a later upload by uploader and returns its
// mxc:// URI and the time (ms) by which the upload must come.
func (s *Service) Create(ctx context.Context, uploader string) (string, int64, error) {
	now := s.now()
	id := newMediaID()
	expires := now.Add(s.cfg.PendingExpiry).UnixMilli()
	earliest, err := s.db.CreatePending(ctx, storage.MediaRecord{Server: s.serverName, MediaID: id, Uploader: uploader,
		CreatedTS: now.UnixMilli(), ExpiresTS: expires}, now.UnixMilli(), s.cfg.MaxPendingUploads)
	if errors.Is(err, storage.ErrMediaPendingLimit) {
		// A slot frees when the earliest pending ID expires (or is uploaded to).
		return "", 0, apierr.LimitExceeded(max(time.Second, time.UnixMilli(earliest).Sub(now)))
	}
	if err != nil {
		return "", 0, err
	}
	return s.mxc(id), expires, nil
}

// UploadTo fills a media ID created by Create: only its creator, only once,
// only before it expires.
func (s *Service) UploadTo(ctx context.Context, uploader, server, mediaID string, up Upload) error {
	if err := s.checkID(server, mediaID); err != nil {
		return err
	}
	if server != s.serverName {
		return apierr.NotFound("Unknown media ID")
	}
	// Refuse before reading the body when the answer is already known.
	rec, err := s.db.GetMedia(ctx, server, mediaID)
	if err != nil {
		return s.mapStorageErr(err)
	}
	switch {
	case rec.Uploader != uploader:
		return s.mapStorageErr(storage.ErrMediaNotUploader)
	case !rec.Pending():
		return s.mapStorageErr(storage.ErrConflict)
	case rec.ExpiresTS <= s.now().UnixMilli():
		return s.mapStorageErr(storage.ErrNotFound)
	}
	if err := s.checkUpload(ctx, uploader, up); err != nil {
		return err
	}
	err = s.store(ctx, up.Body, func(sha string, size int64) error {
		return s.db.CompletePending(ctx, storage.MediaRecord{Server: server, MediaID: mediaID, Uploader: uploader,
			ContentType: normaliseContentType(up.ContentType), Filename: up.Filename, Size: size, SHA256: sha},
			s.now().UnixMilli(), s.cfg.UserQuota)
	})
	return s.mapStorageErr(err)
}

// checkID validates a server name and media ID from a request before
// anything is looked up: malformed ones are simply not found (404), which
// is what the legacy and authenticated endpoints answer for unknown media.
func (s *Service) checkID(server, mediaID string) error {
	if !ValidServerName(server) || !ValidMediaID(mediaID) {
		return apierr.NotFound("Unknown media ID")
	}
	return nil
}

// Content is a media file to serve. The caller closes File.
type Content struct {
	File        *os.File
	Size        int64
	ContentType string
	Filename    string
	Modified    time.Time
}

// pollInterval is how often a download waiting for an async upload looks
// for it. Polling the row (not an in-process signal) also sees uploads
// completed by another process on the same database.
const pollInterval = 200 * time.Millisecond

// MaxWait caps timeout_ms (the spec: the server SHOULD impose a maximum).
const MaxWait = 60 * time.Second

// record returns the uploaded media row, waiting up to wait for a pending
// upload to arrive (504 M_NOT_YET_UPLOADED after that).
func (s *Service) record(ctx context.Context, server, mediaID string, wait time.Duration) (storage.MediaRecord, error) {
	if err := s.checkID(server, mediaID); err != nil {
		return storage.MediaRecord{}, err
	}
	if server != s.serverName {
		// No federation yet: remote media cannot be fetched, so it is not
		// found here (never a placeholder).
		return storage.MediaRecord{}, apierr.NotFound("Remote media is not available from this server")
	}
	deadline := time.Now().Add(min(wait, MaxWait))
	for {
		rec, err := s.db.GetMedia(ctx, server, mediaID)
		if err != nil {
			return storage.MediaRecord{}, s.mapStorageErr(err)
		}
		if !rec.Pending() {
			return rec, nil
		}
		if rec.ExpiresTS <= s.now().UnixMilli() {
			return storage.MediaRecord{}, apierr.NotFound("Unknown or expired media ID")
		}
		if !time.Now().Before(deadline) {
			return storage.MediaRecord{}, apierr.New(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
		}
		t := time.NewTimer(min(pollInterval, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return storage.MediaRecord{}, ctx.Err()
		case <-t.C:
		}
	}
}

// Download opens a local media file.
func (s *Service) Download(ctx context.Context, server, mediaID string, wait time.Duration) (*Content, error) {
	rec, err := s.record(ctx, server, mediaID, wait)
	if err != nil {
		return nil, err
	}
	f, err := s.files.open(rec.SHA256)
	if err != nil {
		return nil, fmt.Errorf("open media %s: %w", mediaID, err)
	}
	return &Content{File: f, Size: rec.Size, ContentType: rec.ContentType, Filename: rec.Filename,
		Modified: time.UnixMilli(rec.CreatedTS)}, nil
}

// Thumbnail returns a thumbnail of a local image at least width x height
// (snapped up to one of the spec's recommended sizes) made with method
// "crop" or "scale"; or the original when it is no larger than that.
func (s *Service) Thumbnail(ctx context.Context, server, mediaID string, width, height int, method string, wait time.Duration) (*Content, error) {
	if width < 1 || height < 1 {
		return nil, apierr.InvalidParam("width and height must be positive integers")
	}
	if method != "crop" && method != "scale" {
		return nil, apierr.InvalidParam("method must be crop or scale")
	}
	rec, err := s.record(ctx, server, mediaID, wait)
	if err != nil {
		return nil, err
	}
	ct := baseType(rec.ContentType)
	if !Thumbnailable(ct) {
		return nil, apierr.Unknown("Cannot generate thumbnails for the requested content")
	}
	box := snap(width, height)
	if t, err := s.db.GetThumbnail(ctx, server, mediaID, box.w, box.h, method); err == nil {
		return s.openThumb(t)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if rec.Size > s.cfg.MaxUploadSize {
		return nil, apierr.TooLarge("Content is too large to thumbnail")
	}
	src, err := s.readAll(rec)
	if err != nil {
		return nil, err
	}
	select {
	case s.thumbSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res, err := makeThumbnail(src, ct, box, method, s.cfg.MaxThumbnailPixels)
	<-s.thumbSlots
	switch {
	case errors.Is(err, errTooManyPixels):
		return nil, apierr.TooLarge("Content is too large to thumbnail")
	case errors.Is(err, errNotThumbnailable):
		return nil, apierr.Unknown("Cannot generate thumbnails for the requested content")
	case err != nil:
		return nil, err
	}
	if res.original {
		f, err := s.files.open(rec.SHA256)
		if err != nil {
			return nil, fmt.Errorf("open media %s: %w", mediaID, err)
		}
		return &Content{File: f, Size: rec.Size, ContentType: ct, Filename: "thumbnail" + extension(ct),
			Modified: time.UnixMilli(rec.CreatedTS)}, nil
	}
	st, err := s.files.stage(bytes.NewReader(res.data), int64(len(res.data)))
	if err != nil {
		return nil, fmt.Errorf("store thumbnail: %w", err)
	}
	defer st.discard()
	t := storage.Thumbnail{Server: server, MediaID: mediaID, Width: box.w, Height: box.h, Method: method,
		ContentType: res.contentType, Size: st.Size, SHA256: st.SHA, CreatedTS: s.now().UnixMilli()}
	if err := s.commit(ctx, st, func() error { return s.db.InsertThumbnail(ctx, t) }); err != nil {
		return nil, err
	}
	return s.openThumb(t)
}

func (s *Service) openThumb(t storage.Thumbnail) (*Content, error) {
	f, err := s.files.open(t.SHA256)
	if err != nil {
		return nil, fmt.Errorf("open thumbnail of %s: %w", t.MediaID, err)
	}
	return &Content{File: f, Size: t.Size, ContentType: t.ContentType, Filename: "thumbnail" + extension(t.ContentType),
		Modified: time.UnixMilli(t.CreatedTS)}, nil
}

// readAll reads a stored original for decoding, bounded by its recorded
// size (a file that grew would be a corrupted store, not more input).
func (s *Service) readAll(rec storage.MediaRecord) ([]byte, error) {
	f, err := s.files.open(rec.SHA256)
	if err != nil {
		return nil, fmt.Errorf("open media %s: %w", rec.MediaID, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, rec.Size))
	if err != nil {
		return nil, fmt.Errorf("read media %s: %w", rec.MediaID, err)
	}
	return b, nil
}

func extension(contentType string) string {
	switch contentType {
	case "image/jpeg":
		return ".jpg"
	case "image/png":
		return ".png"
	case "image/gif":
		return ".gif"
	case "image/webp":
		return ".webp"
	}
	return ""
}
