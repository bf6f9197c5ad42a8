package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"myelin/config"
	"myelin/internal/apierr"
	"myelin/internal/outbound"
	"myelin/storage"
)

// Fetcher sends the requests of URL previews. In production it is an
// *outbound.Client: the SSRF deny-list (loopback, private, link-local, ...
// checked on the address actually dialed, redirects included) with the
// exemptions of outbound.allow_networks. Its response-size limit should be
// PreviewFetchLimit.
type Fetcher interface {
	Do(*http.Request) (*http.Response, error)
}

// PreviewFetchLimit is the response-size limit the Fetcher needs: the
// larger of max_upload_size (images are stored up to it) and the HTML read.
func PreviewFetchLimit(m config.Media) int64 { return max(m.MaxUploadSize, maxHTMLBytes) }

const (
	// maxPreviewURLBytes bounds the url parameter.
	maxPreviewURLBytes = 4096
	// previewTimeout bounds one preview: the page and its image.
	previewTimeout = 45 * time.Second
	// previewTTL is how long a preview is served from the cache;
	// failedPreviewTTL how long a failure is (so repeating a request for a
	// dead or refused URL does not make this server hammer it).
	previewTTL       = time.Hour
	failedPreviewTTL = time.Minute
	// maxConcurrentPreviews bounds fetches in flight at once.
	maxConcurrentPreviews = 4
)

// previewer makes and caches URL previews.
type previewer struct {
	fetch Fetcher
	cache *previewCache
	slots chan struct{}

	mu       sync.Mutex
	inflight map[string]*previewCall
}

// previewCall is one fetch that concurrent requests for the same URL
// share.
type previewCall struct {
	done chan struct{}
	res  map[string]any
	err  error
}

func newPreviewer(fetch Fetcher) *previewer {
	return &previewer{fetch: fetch, cache: newPreviewCache(4096, 8<<20),
		slots: make(chan struct{}, maxConcurrentPreviews), inflight: make(map[string]*previewCall)}
}

// PreviewsEnabled reports whether /preview_url is served: media.url_previews
// is on and an outbound client was given.
func (s *Service) PreviewsEnabled() bool { return s.preview != nil }

// Preview returns the OpenGraph data of rawURL for user (the spec's
// GET /media/preview_url): og:* strings from the page, and its image
// stored in the media repository as user's upload (counted towards user's
// quota, as any upload) and given as og:image (mxc://), og:image:type,
// og:image:width/height (PNG, JPEG, GIF and WebP) and matrix:image:size.
// A URL that is itself an image gives the image fields only; other content
// gives an empty object (the spec: "which may be empty").
//
// ts (the spec's "preferred point in time", 0 if absent) selects nothing:
// only the newest preview of a URL is kept, which the spec allows ("the
// server may return a newer version if it does not have the requested
// version available"); keying the cache on it would only let clients force
// refetches. Previews are shared between users for previewTTL.
//
// Errors: 400 for a missing or non-http(s) URL; 403 M_FORBIDDEN for an
// address the outbound policy refuses (nothing is contacted); 502 M_UNKNOWN
// when the page cannot be fetched or answers an error status. The spec
// defines no error responses here besides 429; these follow the statuses'
// HTTP meaning. The returned map is shared: callers must not modify it.
func (s *Service) Preview(ctx context.Context, user, rawURL string, ts int64) (map[string]any, error) {
	if s.preview == nil {
		return nil, apierr.Unrecognized("URL previews are turned off on this server")
	}
	u, err := previewURL(rawURL)
	if err != nil {
		return nil, err
	}
	key := u.String()
	now := s.now()
	if res, err, ok := s.preview.cache.get(key, now); ok {
		return res, err
	}
	p := s.preview
	p.mu.Lock()
	// A fetch caches its result before it leaves inflight: looking again
	// under the lock closes the gap between the first look and here.
	if res, err, ok := p.cache.get(key, now); ok {
		p.mu.Unlock()
		return res, err
	}
	call, running := p.inflight[key]
	if !running {
		call = &previewCall{done: make(chan struct{})}
		p.inflight[key] = call
		// The fetch outlives a requester who gives up: others may be
		// waiting for it, and its result is cached.
		go s.runPreview(context.WithoutCancel(ctx), user, u, key, call)
	}
	p.mu.Unlock()
	select {
	case <-call.done:
		return call.res, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Service) runPreview(ctx context.Context, user string, u *url.URL, key string, call *previewCall) {
	p := s.preview
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	defer func() {
		p.mu.Lock()
		delete(p.inflight, key)
		p.mu.Unlock()
		close(call.done)
	}()
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		call.err = apierr.New(http.StatusBadGateway, "M_UNKNOWN", "Timed out waiting to fetch the URL")
		return
	}
	call.res, call.err = s.makePreview(ctx, user, u)
	<-p.slots
	if _, isAPI := apierr.As(call.err); call.err == nil || isAPI {
		ttl := previewTTL
		if call.err != nil {
			ttl = failedPreviewTTL
		}
		p.cache.put(key, call.res, call.err, s.now().Add(ttl))
	}
}

// previewURL checks the url parameter: an absolute http(s) URL without
// credentials, of bounded length. The fragment is dropped (never sent).
func previewURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, apierr.MissingParam("url is required")
	}
	if len(raw) > maxPreviewURLBytes {
		return nil, apierr.InvalidParam("url is too long")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return nil, apierr.InvalidParam("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return nil, apierr.InvalidParam("url must not contain credentials")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// fetchFailed maps a failed fetch to the client's error and logs it
// without the URL: only its host and the cause (*url.Error, which the
// HTTP client wraps around every failure, names the whole URL, query
// string included, so it is unwrapped first).
func fetchFailed(ctx context.Context, u *url.URL, what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	slog.DebugContext(ctx, "url preview: fetch failed", "what", what, "host", u.Hostname(), "err", err)
	if errors.Is(err, outbound.ErrDenied) {
		return apierr.Forbidden("URL previews of this address are not allowed")
	}
	return apierr.New(http.StatusBadGateway, "M_UNKNOWN", "Could not fetch the URL")
}

// get fetches u through the outbound client.
func (s *Service) get(ctx context.Context, u *url.URL, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("preview request: %w", err)
	}
	req.Header.Set("Accept", accept)
	return s.preview.fetch.Do(req)
}

// closeBody discards what is left of a body (bounded by the outbound
// client's limit) so the connection can be reused, and closes it.
func closeBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func (s *Service) makePreview(ctx context.Context, user string, u *url.URL) (map[string]any, error) {
	resp, err := s.get(ctx, u, "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8")
	if err != nil {
		return nil, fetchFailed(ctx, u, "page", err)
	}
	defer closeBody(resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fetchFailed(ctx, u, "page", fmt.Errorf("status %d", resp.StatusCode))
	}
	ct := baseType(resp.Header.Get("Content-Type"))
	out := make(map[string]any)
	switch {
	case ct == "text/html" || ct == "application/xhtml+xml":
		og := parseHTML(resp.Body)
		imageRef := firstOf(og, "og:image", "og:image:url", "og:image:secure_url")
		for _, k := range []string{"og:image", "og:image:url", "og:image:secure_url", "og:image:type", "og:image:width", "og:image:height"} {
			// Replaced by the stored copy's, or omitted with it.
			delete(og, k)
		}
		alt, hasAlt := og["og:image:alt"]
		delete(og, "og:image:alt")
		for k, v := range og {
			out[k] = v
		}
		// The page's final URL (after redirects) is what relative
		// references are relative to.
		imageURL := resolveImage(resp.Request.URL, imageRef)
		if imageURL == nil {
			break
		}
		img, err := s.previewImage(ctx, user, imageURL)
		if err != nil {
			return nil, err
		}
		if img != nil {
			img.addTo(out)
			if hasAlt {
				out["og:image:alt"] = alt
			}
		}
	case strings.HasPrefix(ct, "image/"):
		// The URL is an image: its own limits and quota errors are the
		// answer, as for an upload.
		img, err := s.storeImage(ctx, user, resp, ct)
		if err != nil && !isInternal(err) {
			return nil, fetchFailed(ctx, u, "image", err)
		}
		if err != nil {
			return nil, err
		}
		img.addTo(out)
	}
	return out, nil
}

func firstOf(m map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}

// resolveImage resolves an og:image reference against the page URL; nil
// unless the result is an absolute http(s) URL of bounded length.
func resolveImage(base *url.URL, ref string) *url.URL {
	if ref == "" || base == nil {
		return nil
	}
	r, err := url.Parse(ref)
	if err != nil {
		return nil
	}
	u := base.ResolveReference(r)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
		return nil
	}
	u.Fragment, u.RawFragment = "", ""
	if len(u.String()) > maxPreviewURLBytes {
		return nil
	}
	return u
}

// previewImage fetches and stores a page's image; nil (and the preview
// goes without an image) when it cannot be fetched, is not an image, is
// too large or would exceed the user's quota. Only server faults (the
// database, the file store) are errors.
func (s *Service) previewImage(ctx context.Context, user string, u *url.URL) (*storedImage, error) {
	resp, err := s.get(ctx, u, "image/*")
	if err != nil {
		_ = fetchFailed(ctx, u, "image", err)
		return nil, nil
	}
	defer closeBody(resp)
	ct := baseType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 200 || resp.StatusCode > 299 || !strings.HasPrefix(ct, "image/") {
		slog.DebugContext(ctx, "url preview: image skipped", "host", u.Hostname(), "status", resp.StatusCode)
		return nil, nil
	}
	img, err := s.storeImage(ctx, user, resp, ct)
	if err == nil {
		return img, nil
	}
	if _, isAPI := apierr.As(err); isAPI || !isInternal(err) {
		// Too large, over quota, or the remote failed mid-body.
		slog.DebugContext(ctx, "url preview: image not stored", "host", u.Hostname(), "err", err)
		return nil, nil
	}
	return nil, err
}

// errFetchBody marks a failure reading a fetched body (the remote's
// fault), as opposed to the store's.
var errFetchBody = errors.New("reading the fetched body")

// isInternal tells a server fault or a Matrix error (size, quota) from a
// failure of the remote.
func isInternal(err error) bool {
	if _, isAPI := apierr.As(err); isAPI {
		return true
	}
	return !errors.Is(err, errFetchBody)
}

// fetchReader tags read errors of a fetched body.
type fetchReader struct{ r io.Reader }

func (f fetchReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errFetchBody, err)
	}
	return n, err
}

// storedImage is a fetched image in the media repository.
type storedImage struct {
	mxc           string
	contentType   string
	size          int64
	width, height int // 0 when not decodable
}

func (i *storedImage) addTo(out map[string]any) {
	out["og:image"] = i.mxc
	out["og:image:type"] = i.contentType
	out["matrix:image:size"] = i.size
	if i.width > 0 && i.height > 0 {
		out["og:image:width"] = i.width
		out["og:image:height"] = i.height
	}
}

// storeImage stores a fetched image as user's upload (same size limit,
// quota and content-addressed store as uploads) and reads its dimensions
// from the header of PNG, JPEG, GIF and WebP (never decoding pixels).
func (s *Service) storeImage(ctx context.Context, user string, resp *http.Response, ct string) (*storedImage, error) {
	if resp.ContentLength > s.cfg.MaxUploadSize {
		return nil, tooLarge()
	}
	if err := s.checkUpload(ctx, user, Upload{ContentLength: resp.ContentLength}); err != nil {
		return nil, err
	}
	id := newMediaID()
	var sha string
	var size int64
	err := s.store(ctx, fetchReader{resp.Body}, func(h string, n int64) error {
		sha, size = h, n
		return s.db.InsertMedia(ctx, storage.MediaRecord{Server: s.serverName, MediaID: id, Uploader: user,
			ContentType: ct, Size: n, SHA256: h, CreatedTS: s.now().UnixMilli()}, s.cfg.UserQuota)
	})
	if err != nil {
		return nil, s.mapStorageErr(err)
	}
	img := &storedImage{mxc: s.mxc(id), contentType: ct, size: size}
	if c, ok := codecs[ct]; ok {
		f, err := s.files.open(sha)
		if err != nil {
			return nil, fmt.Errorf("open preview image: %w", err)
		}
		defer f.Close()
		if cfg, err := c.config(f); err == nil {
			img.width, img.height = cfg.Width, cfg.Height
		}
	}
	return img, nil
}
