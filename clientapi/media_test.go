package clientapi

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"myelin/config"
	"myelin/media"
)

const (
	mediaV3 = "/_matrix/media/v3"
	mediaC1 = "/_matrix/client/v1/media"
)

// mediaServer is a server with the media repository wired, its data
// directory and two users' tokens.
type mediaServer struct {
	*server
	dataDir    string
	alice, bob string
}

// eachMediaEngine runs fn on both engines with media served; mutate
// adjusts the media config.
func eachMediaEngine(t *testing.T, mutate func(*config.Media), fn func(t *testing.T, s *mediaServer)) {
	t.Helper()
	dataDir := ""
	eachEngine(t, func(cfg *config.Config) {
		if mutate != nil {
			mutate(&cfg.Media)
		}
	}, func(t *testing.T, s *server) {
		dataDir = t.TempDir()
		s.cfg.DataDir = dataDir
		svc, err := media.New(media.Options{Config: s.cfg, DB: s.db})
		if err != nil {
			t.Fatal(err)
		}
		h, err := New(Options{Config: s.cfg, Accounts: s.svc, Media: svc})
		if err != nil {
			t.Fatal(err)
		}
		s.h = h
		ms := &mediaServer{server: s, dataDir: dataDir}
		ms.alice = s.register("alice", "correct horse").str("access_token")
		ms.bob = s.register("bob", "battery staple").str("access_token")
		fn(t, ms)
	})
}

// raw sends a request and returns the recorder (media bodies are not JSON).
// contentLength -1 sends the body without a declared length.
func (s *mediaServer) raw(method, path, token, contentType string, body []byte, contentLength int64) *httptest.ResponseRecorder {
	s.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.RemoteAddr = "192.0.2.1:1234"
	req.ContentLength = contentLength
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

// jsonOf decodes a JSON response body.
func jsonOf(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not JSON: %q", rec.Body.String())
	}
	return m
}

// expectErr fails unless rec is the status and errcode.
func expectErr(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d (body %s)", rec.Code, status, rec.Body.String())
	}
	m := jsonOf(t, rec)
	if m["errcode"] != code {
		t.Fatalf("errcode %v, want %s (body %s)", m["errcode"], code, rec.Body.String())
	}
	return m
}

// upload posts content and returns the media ID of its mxc:// URI.
func (s *mediaServer) upload(token, contentType, filename string, body []byte) string {
	s.t.Helper()
	path := mediaV3 + "/upload"
	if filename != "" {
		path += "?filename=" + urlQueryEscape(filename)
	}
	rec := s.raw("POST", path, token, contentType, body, int64(len(body)))
	if rec.Code != 200 {
		s.t.Fatalf("upload: %d %s", rec.Code, rec.Body.String())
	}
	uri, _ := jsonOf(s.t, rec)["content_uri"].(string)
	id, ok := strings.CutPrefix(uri, "mxc://test.local/")
	if !ok || !media.ValidMediaID(id) || len(id) != 24 {
		s.t.Fatalf("content_uri %q", uri)
	}
	return id
}

func urlQueryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", " ", "%20", "&", "%26", "#", "%23", "+", "%2B", "?", "%3F")
	return r.Replace(s)
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 7, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkSecurityHeaders fails unless a media response carries every
// sandboxing header.
func checkSecurityHeaders(t *testing.T, rec *httptest.ResponseRecorder, wantType, wantDisposition string) {
	t.Helper()
	h := rec.Header()
	if got := h.Get("Content-Type"); got != wantType {
		t.Errorf("Content-Type %q, want %q", got, wantType)
	}
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", got)
	}
	if got := h.Get("Content-Security-Policy"); !strings.HasPrefix(got, "sandbox; default-src 'none'; script-src 'none';") {
		t.Errorf("Content-Security-Policy %q", got)
	}
	if got := h.Get("Cross-Origin-Resource-Policy"); got != "cross-origin" {
		t.Errorf("Cross-Origin-Resource-Policy %q", got)
	}
	kind, _, err := mime.ParseMediaType(h.Get("Content-Disposition"))
	if err != nil || kind != wantDisposition {
		t.Errorf("Content-Disposition %q, want %s", h.Get("Content-Disposition"), wantDisposition)
	}
}

func TestMediaUploadDownloadThumbnail(t *testing.T) {
	eachMediaEngine(t, nil, func(t *testing.T, s *mediaServer) {
		pic := pngBytes(t, 400, 300)
		id := s.upload(s.alice, "image/png", "cat photo.png", pic)

		rec := s.raw("GET", mediaC1+"/download/test.local/"+id, s.bob, "", nil, 0)
		if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), pic) {
			t.Fatalf("download: %d, %d bytes", rec.Code, rec.Body.Len())
		}
		checkSecurityHeaders(t, rec, "image/png", "inline")
		if _, p, _ := mime.ParseMediaType(rec.Header().Get("Content-Disposition")); p["filename"] != "cat photo.png" {
			t.Errorf("filename %q", p["filename"])
		}
		// The file name in the path overrides the stored one.
		rec = s.raw("GET", mediaC1+"/download/test.local/"+id+"/other%20name.png", s.bob, "", nil, 0)
		if _, p, _ := mime.ParseMediaType(rec.Header().Get("Content-Disposition")); rec.Code != 200 || p["filename"] != "other name.png" {
			t.Errorf("download with file name: %d %q", rec.Code, rec.Header().Get("Content-Disposition"))
		}
		// A Range request (seeking in audio/video) gets the part.
		req := httptest.NewRequest("GET", mediaC1+"/download/test.local/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+s.alice)
		req.Header.Set("Range", "bytes=0-7")
		rr := httptest.NewRecorder()
		s.h.ServeHTTP(rr, req)
		if rr.Code != http.StatusPartialContent || !bytes.Equal(rr.Body.Bytes(), pic[:8]) {
			t.Errorf("range: %d %x", rr.Code, rr.Body.Bytes())
		}

		// Identical content is stored once.
		id2 := s.upload(s.bob, "image/png", "", pic)
		if id2 == id {
			t.Fatal("same media ID twice")
		}
		files := 0
		_ = filepath.WalkDir(filepath.Join(s.dataDir, "media"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files++
			}
			return nil
		})
		if files != 1 {
			t.Fatalf("%d files for one content", files)
		}

		for _, tc := range []struct {
			query        string
			wantW, wantH int
		}{
			{"width=96&height=96&method=crop", 96, 96},
			{"width=320&height=240&method=scale", 320, 240},
			{"width=50&height=40", 96, 72}, // scale by default, snapped up to 96x96
			{"width=2000&height=2000&method=scale", 400, 300},
		} {
			for range 2 { // the second answer comes from the cache
				rec := s.raw("GET", mediaC1+"/thumbnail/test.local/"+id+"?"+tc.query, s.alice, "", nil, 0)
				if rec.Code != 200 {
					t.Fatalf("%s: %d %s", tc.query, rec.Code, rec.Body.String())
				}
				checkSecurityHeaders(t, rec, "image/png", "inline")
				cfg, err := png.DecodeConfig(bytes.NewReader(rec.Body.Bytes()))
				if err != nil || cfg.Width != tc.wantW || cfg.Height != tc.wantH {
					t.Fatalf("%s: %dx%d %v, want %dx%d", tc.query, cfg.Width, cfg.Height, err, tc.wantW, tc.wantH)
				}
			}
		}
		var thumbs int
		if err := s.db.R.QueryRow(`SELECT COUNT(*) FROM media_thumbnails WHERE media_id = $1`, id).Scan(&thumbs); err != nil || thumbs != 3 {
			t.Fatalf("%d cached thumbnails (%v), want 3 (the original needs none)", thumbs, err)
		}

		// Thumbnail requests the server cannot serve.
		html := s.upload(s.alice, "text/html", "page.html", []byte("<script>alert(1)</script>"))
		for _, tc := range []struct {
			path, code string
			status     int
		}{
			{"/thumbnail/test.local/" + html + "?width=32&height=32", "M_UNKNOWN", 400},
			{"/thumbnail/test.local/" + id + "?width=32", "M_MISSING_PARAM", 400},
			{"/thumbnail/test.local/" + id + "?width=a&height=32", "M_INVALID_PARAM", 400},
			{"/thumbnail/test.local/" + id + "?width=-5&height=32", "M_INVALID_PARAM", 400},
			{"/thumbnail/test.local/" + id + "?width=32&height=32&method=stretch", "M_INVALID_PARAM", 400},
			{"/thumbnail/test.local/AAAAAAAAAAAAAAAAAAAAAAAA?width=32&height=32", "M_NOT_FOUND", 404},
		} {
			expectErr(t, s.raw("GET", mediaC1+tc.path, s.alice, "", nil, 0), tc.status, tc.code)
		}

		// Config, and the endpoints that need a token.
		rec = s.raw("GET", mediaC1+"/config", s.alice, "", nil, 0)
		if rec.Code != 200 || jsonOf(t, rec)["m.upload.size"] != float64(50<<20) {
			t.Fatalf("config: %d %s", rec.Code, rec.Body.String())
		}
		for _, p := range []string{"/config", "/download/test.local/" + id, "/thumbnail/test.local/" + id + "?width=32&height=32"} {
			expectErr(t, s.raw("GET", mediaC1+p, "", "", nil, 0), 401, "M_MISSING_TOKEN")
		}
		expectErr(t, s.raw("POST", mediaV3+"/upload", "", "image/png", pic, int64(len(pic))), 401, "M_MISSING_TOKEN")
		// URL previews are not served.
		expectErr(t, s.raw("GET", mediaC1+"/preview_url?url=https://example.org", s.alice, "", nil, 0), 404, "M_UNRECOGNIZED")
	})
}

func TestMediaUnsafeTypesAreAttachments(t *testing.T) {
	eachMediaEngine(t, nil, func(t *testing.T, s *mediaServer) {
		for _, tc := range []struct {
			contentType, filename, disposition string
			body                               string
		}{
			{"text/html", "page.html", "attachment", "<html><script>alert(1)</script></html>"},
			{"image/svg+xml", "logo.svg", "attachment", `<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`},
			{"application/xhtml+xml", "x.xhtml", "attachment", "<html/>"},
			{"", "blob", "attachment", "no type given"},
			{"text/plain; charset=utf-8", "notes.txt", "inline", "hello"},
		} {
			id := s.upload(s.alice, tc.contentType, tc.filename, []byte(tc.body))
			rec := s.raw("GET", mediaC1+"/download/test.local/"+id, s.alice, "", nil, 0)
			if rec.Code != 200 || rec.Body.String() != tc.body {
				t.Fatalf("%s: %d %q", tc.contentType, rec.Code, rec.Body.String())
			}
			want := tc.contentType
			if want == "" {
				want = "application/octet-stream"
			}
			checkSecurityHeaders(t, rec, want, tc.disposition)
		}
	})
}

func TestMediaTraversalAndRemote(t *testing.T) {
	eachMediaEngine(t, nil, func(t *testing.T, s *mediaServer) {
		// A file next to the store that no request may ever reach.
		secret := "TOP SECRET PATIENT FILE"
		if err := os.WriteFile(filepath.Join(s.dataDir, "secret"), []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		id := s.upload(s.alice, "text/plain", "a.txt", []byte("public"))
		for _, p := range []string{
			"/download/test.local/..%2Fsecret",
			"/download/test.local/..%2F..%2Fsecret",
			"/download/test.local/%2e%2e%2Fsecret",
			"/download/test.local/%2e%2e",
			"/download/test.local/..",
			"/download/test.local/%2Fetc%2Fpasswd",
			"/download/test.local/" + id + "%00",
			"/download/test.local/%00",
			"/download/test.local/" + id + "%2F..%2F..%2Fsecret",
			"/download/..%2F..%2F/" + id,
			"/download/test.local%2F..%2F/" + id,
			"/download/test.local/../../secret",
			"/download/test.local/%252e%252e%252fsecret",
			"/download/test.local/" + strings.Repeat("a", 300),
			"/thumbnail/test.local/..%2Fsecret?width=32&height=32",
		} {
			rec := s.raw("GET", mediaC1+p, s.alice, "", nil, 0)
			if rec.Code != 404 && rec.Code != 400 {
				t.Errorf("%s: status %d", p, rec.Code)
			}
			if strings.Contains(rec.Body.String(), secret) || strings.Contains(rec.Body.String(), "public") {
				t.Errorf("%s: served file content", p)
			}
			if rec.Code == 404 || rec.Code == 400 {
				if m := jsonOf(t, rec); m["errcode"] == nil {
					t.Errorf("%s: no errcode", p)
				}
			}
		}
		// A file name in the path only names the download; one with a
		// control character is refused.
		rec := s.raw("GET", mediaC1+"/download/test.local/"+id+"/..%2F..%2Fsecret", s.alice, "", nil, 0)
		if rec.Code != 200 || rec.Body.String() != "public" {
			t.Fatalf("file name changed the content: %d %q", rec.Code, rec.Body.String())
		}
		expectErr(t, s.raw("GET", mediaC1+"/download/test.local/"+id+"/a%00b", s.alice, "", nil, 0), 400, "M_INVALID_PARAM")
		// Remote media: no federation, so not found (never a placeholder).
		expectErr(t, s.raw("GET", mediaC1+"/download/other.example/"+id, s.alice, "", nil, 0), 404, "M_NOT_FOUND")
		// Legacy unauthenticated downloads are frozen, even for existing media.
		for _, p := range []string{"/download/test.local/" + id, "/download/test.local/" + id + "/a.txt", "/thumbnail/test.local/" + id + "?width=32&height=32"} {
			expectErr(t, s.raw("GET", mediaV3+p, "", "", nil, 0), 404, "M_NOT_FOUND")
			expectErr(t, s.raw("GET", mediaV3+p, s.alice, "", nil, 0), 404, "M_NOT_FOUND")
		}
		rec = s.raw("GET", mediaV3+"/config", s.alice, "", nil, 0)
		if rec.Code != 200 || jsonOf(t, rec)["m.upload.size"] == nil {
			t.Fatalf("legacy config: %d %s", rec.Code, rec.Body.String())
		}
	})
}

// With media.legacy_unauthenticated_downloads on, the deprecated endpoints
// serve local media without a token, with the same headers and the same
// refusals as the authenticated ones.
func TestMediaLegacyDownloadsOption(t *testing.T) {
	eachMediaEngine(t, func(m *config.Media) { m.LegacyUnauthenticatedDownloads = true }, func(t *testing.T, s *mediaServer) {
		id := s.upload(s.alice, "text/html", "page.html", []byte("<b>hi</b>"))
		for _, tc := range []struct {
			path    string
			status  int
			errcode string
		}{
			{"/download/test.local/" + id, 200, ""},
			{"/download/test.local/" + id + "/other.html", 200, ""},
			{"/download/test.local/..%2Fsecret", 404, "M_NOT_FOUND"},
			{"/download/other.example/" + id, 404, "M_NOT_FOUND"},
			{"/thumbnail/test.local/" + id + "?width=32", 400, "M_MISSING_PARAM"},
		} {
			rec := s.raw("GET", mediaV3+tc.path, "", "", nil, 0)
			if tc.status != 200 {
				expectErr(t, rec, tc.status, tc.errcode)
				continue
			}
			if rec.Code != 200 || rec.Body.String() != "<b>hi</b>" {
				t.Fatalf("%s: %d %q", tc.path, rec.Code, rec.Body.String())
			}
			checkSecurityHeaders(t, rec, "text/html", "attachment")
		}
	})
}

func TestMediaLimits(t *testing.T) {
	eachMediaEngine(t, func(m *config.Media) {
		m.MaxUploadSize = 100
		m.UserQuota = 150
		m.MaxPendingUploads = 2
	}, func(t *testing.T, s *mediaServer) {
		count := func() (rows int, usage int64) {
			t.Helper()
			if err := s.db.R.QueryRow(`SELECT COUNT(*) FROM media`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			_ = s.db.R.QueryRow(`SELECT COALESCE(SUM(bytes), 0) FROM media_usage`).Scan(&usage)
			return rows, usage
		}
		tmpEmpty := func() {
			t.Helper()
			entries, err := os.ReadDir(filepath.Join(s.dataDir, "media", "tmp"))
			if err != nil || len(entries) != 0 {
				t.Fatalf("temp files left: %d %v", len(entries), err)
			}
		}
		big := bytes.Repeat([]byte("x"), 101)
		// Declared too large: refused before reading; undeclared: refused
		// after 101 bytes. Nothing stored either way.
		expectErr(t, s.raw("POST", mediaV3+"/upload", s.alice, "text/plain", big, 101), 413, "M_TOO_LARGE")
		expectErr(t, s.raw("POST", mediaV3+"/upload", s.alice, "text/plain", big, -1), 413, "M_TOO_LARGE")
		if rows, usage := count(); rows != 0 || usage != 0 {
			t.Fatalf("after refused uploads: %d rows, %d bytes", rows, usage)
		}
		tmpEmpty()

		s.upload(s.alice, "text/plain", "", bytes.Repeat([]byte("a"), 100))
		// 100 + 60 > 150: over quota, declared or not.
		for _, cl := range []int64{60, -1} {
			m := expectErr(t, s.raw("POST", mediaV3+"/upload", s.alice, "text/plain", bytes.Repeat([]byte("b"), 60), cl), 403, "M_USER_LIMIT_EXCEEDED")
			if m["info_uri"] != "https://test.local" {
				t.Fatalf("info_uri %v", m["info_uri"])
			}
		}
		if rows, usage := count(); rows != 1 || usage != 100 {
			t.Fatalf("after over-quota uploads: %d rows, %d bytes", rows, usage)
		}
		tmpEmpty()
		// The quota is per user.
		s.upload(s.bob, "text/plain", "", bytes.Repeat([]byte("c"), 100))
		s.upload(s.alice, "text/plain", "", bytes.Repeat([]byte("d"), 50))

		// Pending async uploads are limited per user.
		for range 2 {
			rec := s.raw("POST", "/_matrix/media/v1/create", s.alice, "", nil, 0)
			if rec.Code != 200 {
				t.Fatalf("create: %d %s", rec.Code, rec.Body.String())
			}
		}
		rec := s.raw("POST", "/_matrix/media/v1/create", s.alice, "", nil, 0)
		expectErr(t, rec, 429, "M_LIMIT_EXCEEDED")
		if rec.Header().Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
		if rec := s.raw("POST", "/_matrix/media/v1/create", s.bob, "", nil, 0); rec.Code != 200 {
			t.Fatalf("bob's create: %d", rec.Code)
		}
	})
}

func TestMediaAsyncUpload(t *testing.T) {
	eachMediaEngine(t, nil, func(t *testing.T, s *mediaServer) {
		rec := s.raw("POST", "/_matrix/media/v1/create", s.alice, "", nil, 0)
		if rec.Code != 200 {
			t.Fatalf("create: %d %s", rec.Code, rec.Body.String())
		}
		body := jsonOf(t, rec)
		uri, _ := body["content_uri"].(string)
		id, ok := strings.CutPrefix(uri, "mxc://test.local/")
		exp, _ := body["unused_expires_at"].(float64)
		if !ok || !media.ValidMediaID(id) || exp <= 0 {
			t.Fatalf("create answered %s", rec.Body.String())
		}
		// Not uploaded yet: 504 after the (zero) wait; thumbnails too.
		expectErr(t, s.raw("GET", mediaC1+"/download/test.local/"+id+"?timeout_ms=0", s.alice, "", nil, 0), 504, "M_NOT_YET_UPLOADED")
		expectErr(t, s.raw("GET", mediaC1+"/thumbnail/test.local/"+id+"?width=32&height=32&timeout_ms=10", s.alice, "", nil, 0), 504, "M_NOT_YET_UPLOADED")
		expectErr(t, s.raw("GET", mediaC1+"/download/test.local/"+id+"?timeout_ms=x", s.alice, "", nil, 0), 400, "M_INVALID_PARAM")

		pic := pngBytes(t, 10, 10)
		put := func(token, target string) *httptest.ResponseRecorder {
			return s.raw("PUT", mediaV3+"/upload/"+target+"?filename=dog.png", token, "image/png", pic, int64(len(pic)))
		}
		expectErr(t, put(s.bob, "test.local/"+id), 403, "M_FORBIDDEN")
		expectErr(t, put(s.alice, "test.local/AAAAAAAAAAAAAAAAAAAAAAAA"), 404, "M_NOT_FOUND")
		expectErr(t, put(s.alice, "other.example/"+id), 404, "M_NOT_FOUND")
		expectErr(t, put(s.alice, "test.local/..%2F"+id), 404, "M_NOT_FOUND")
		if rec := put(s.alice, "test.local/"+id); rec.Code != 200 || rec.Body.String() != "{}" {
			t.Fatalf("put: %d %s", rec.Code, rec.Body.String())
		}
		expectErr(t, put(s.alice, "test.local/"+id), 409, "M_CANNOT_OVERWRITE_MEDIA")
		rec = s.raw("GET", mediaC1+"/download/test.local/"+id, s.bob, "", nil, 0)
		if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), pic) {
			t.Fatalf("download: %d", rec.Code)
		}
		if _, p, _ := mime.ParseMediaType(rec.Header().Get("Content-Disposition")); p["filename"] != "dog.png" {
			t.Fatalf("disposition %q", rec.Header().Get("Content-Disposition"))
		}
		// A small image is its own thumbnail (never upscaled).
		rec = s.raw("GET", mediaC1+"/thumbnail/test.local/"+id+"?width=32&height=32", s.bob, "", nil, 0)
		if b, _ := io.ReadAll(rec.Body); rec.Code != 200 || !bytes.Equal(b, pic) {
			t.Fatalf("thumbnail of a small image: %d", rec.Code)
		}
	})
}
