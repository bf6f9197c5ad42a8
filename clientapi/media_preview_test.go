package clientapi

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"myelin/config"
	"myelin/internal/outbound"
	"myelin/media"
)

// pageServer is a web server previews fetch from, counting requests per
// path.
type pageServer struct {
	*httptest.Server
	png  []byte
	mu   sync.Mutex
	hits map[string]int
}

func (p *pageServer) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

func (p *pageServer) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.hits {
		n += c
	}
	return n
}

func newPageServer(t *testing.T) *pageServer {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 279, 129))); err != nil {
		t.Fatal(err)
	}
	p := &pageServer{png: b.Bytes(), hits: make(map[string]int)}
	page := `<html prefix="og: http://ogp.me/ns#"><head><title>The Rock (1996)</title>
<meta property="og:title" content="The Rock" />
<meta property="og:type" content="video.movie" />
<meta property="og:url" content="http://www.imdb.com/title/tt0117500/" />
<meta property="og:image" content="%s" />
<meta property="og:image:width" content="1" />
</head><body></body></html>`
	mux := http.NewServeMux()
	mux.HandleFunc("/sub/test.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, "test.png") // relative to /sub/
	})
	mux.HandleFunc("/sub/test.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(p.png)
	})
	mux.HandleFunc("/title-only.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<title>Just a title</title><p>no metadata")
	})
	mux.HandleFunc("/broken-image.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, page, "/missing.png")
	})
	mux.HandleFunc("/metadata-image.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, page, "http://169.254.169.254/latest/meta-data/")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/sub/test.html", http.StatusFound)
	})
	mux.HandleFunc("/redirect-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/slow.html", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<meta property="og:title" content="Slow">`)
	})
	mux.HandleFunc("/doc.pdf", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pdf")
		w.Write([]byte("%PDF-1.4"))
	})
	mux.HandleFunc("/huge.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<meta property="og:title" content="Huge">`)
		chunk := []byte(strings.Repeat("<p>filler</p>\n", 1024))
		for range 256 { // 3.5 MiB, more than is read
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.hits[r.URL.Path]++
		p.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	p.Server = httptest.NewServer(counted)
	t.Cleanup(p.Close)
	return p
}

// eachPreviewEngine runs fn on both engines with media served and URL
// previews fetched through an outbound client allowing allow.
func eachPreviewEngine(t *testing.T, allow []string, mutate func(*config.Media), fn func(t *testing.T, s *mediaServer)) {
	t.Helper()
	eachEngine(t, func(cfg *config.Config) {
		if mutate != nil {
			mutate(&cfg.Media)
		}
	}, func(t *testing.T, s *server) {
		s.cfg.DataDir = t.TempDir()
		nets, err := outbound.ParseNetworks(allow)
		if err != nil {
			t.Fatal(err)
		}
		client := outbound.New(outbound.Options{Allow: nets, MaxResponseBytes: media.PreviewFetchLimit(s.cfg.Media)})
		t.Cleanup(client.CloseIdleConnections)
		svc, err := media.New(media.Options{Config: s.cfg, DB: s.db, Fetcher: client})
		if err != nil {
			t.Fatal(err)
		}
		h, err := New(Options{Config: s.cfg, Accounts: s.svc, Media: svc})
		if err != nil {
			t.Fatal(err)
		}
		s.h = h
		ms := &mediaServer{server: s, dataDir: s.cfg.DataDir}
		ms.alice = s.register("alice", "correct horse").str("access_token")
		fn(t, ms)
	})
}

func previewPath(prefix, target string) string {
	return prefix + "/preview_url?url=" + url.QueryEscape(target)
}

func TestURLPreview(t *testing.T) {
	pages := newPageServer(t)
	eachPreviewEngine(t, []string{"127.0.0.0/8"}, nil, func(t *testing.T, s *mediaServer) {
		before := pages.count("/sub/test.html") // the page server is shared by both engines
		// Both endpoints, the page's og tags, its relative image stored.
		for _, prefix := range []string{mediaC1, mediaV3} {
			rec := s.raw("GET", previewPath(prefix, pages.URL+"/sub/test.html"), s.alice, "", nil, 0)
			if rec.Code != 200 {
				t.Fatalf("%s: %d %s", prefix, rec.Code, rec.Body.String())
			}
			og := jsonOf(t, rec)
			for k, v := range map[string]any{"og:title": "The Rock", "og:type": "video.movie",
				"og:url": "http://www.imdb.com/title/tt0117500/", "og:image:type": "image/png",
				"og:image:width": 279.0, "og:image:height": 129.0, "matrix:image:size": float64(len(pages.png))} {
				if og[k] != v {
					t.Errorf("%s: %s = %v, want %v (%v)", prefix, k, og[k], v, og)
				}
			}
			mxc, _ := og["og:image"].(string)
			id, ok := strings.CutPrefix(mxc, "mxc://test.local/")
			if !ok {
				t.Fatalf("og:image %q", mxc)
			}
			dl := s.raw("GET", mediaC1+"/download/test.local/"+id, s.alice, "", nil, 0)
			if dl.Code != 200 || !bytes.Equal(dl.Body.Bytes(), pages.png) || dl.Header().Get("Content-Type") != "image/png" {
				t.Fatalf("download of the preview image: %d %q", dl.Code, dl.Header().Get("Content-Type"))
			}
		}
		// Cached: the second request (other endpoint) fetched nothing.
		if n := pages.count("/sub/test.html") - before; n != 1 {
			t.Errorf("page fetched %d times, want 1 (cache)", n)
		}

		// Concurrent requests for one URL share one fetch.
		slowBefore := pages.count("/slow.html")
		var wg sync.WaitGroup
		codes := make([]int, 5)
		for i := range codes {
			wg.Go(func() {
				codes[i] = s.raw("GET", previewPath(mediaC1, pages.URL+"/slow.html"), s.alice, "", nil, 0).Code
			})
		}
		wg.Wait()
		if n := pages.count("/slow.html") - slowBefore; n != 1 || codes[0] != 200 || codes[4] != 200 {
			t.Errorf("concurrent previews: %d fetches, codes %v", n, codes)
		}

		cases := []struct {
			name   string
			target string
			status int
			code   string
			check  func(t *testing.T, og map[string]any)
		}{
			{"title fallback", pages.URL + "/title-only.html", 200, "", func(t *testing.T, og map[string]any) {
				if og["og:title"] != "Just a title" || len(og) != 1 {
					t.Errorf("%v", og)
				}
			}},
			{"image url", pages.URL + "/sub/test.png?x=1", 200, "", func(t *testing.T, og map[string]any) {
				if !strings.HasPrefix(fmt.Sprint(og["og:image"]), "mxc://") || og["og:image:width"] != 279.0 ||
					og["matrix:image:size"] != float64(len(pages.png)) || og["og:title"] != nil {
					t.Errorf("%v", og)
				}
			}},
			{"redirect, image relative to the final url", pages.URL + "/redirect", 200, "", func(t *testing.T, og map[string]any) {
				if og["og:title"] != "The Rock" || og["og:image:height"] != 129.0 {
					t.Errorf("%v", og)
				}
			}},
			{"missing image: preview without it", pages.URL + "/broken-image.html", 200, "", func(t *testing.T, og map[string]any) {
				if og["og:title"] != "The Rock" || og["og:image"] != nil || og["og:image:width"] != nil {
					t.Errorf("%v", og)
				}
			}},
			{"image at a refused address: preview without it", pages.URL + "/metadata-image.html", 200, "", func(t *testing.T, og map[string]any) {
				if og["og:title"] != "The Rock" || og["og:image"] != nil {
					t.Errorf("%v", og)
				}
			}},
			{"huge page: the head is read", pages.URL + "/huge.html", 200, "", func(t *testing.T, og map[string]any) {
				if og["og:title"] != "Huge" {
					t.Errorf("%v", og)
				}
			}},
			{"not html: empty", pages.URL + "/doc.pdf", 200, "", func(t *testing.T, og map[string]any) {
				if len(og) != 0 {
					t.Errorf("%v", og)
				}
			}},
			{"upstream 404", pages.URL + "/nothing-here", 502, "M_UNKNOWN", nil},
			{"unreachable", "http://127.0.0.1:1/", 502, "M_UNKNOWN", nil},
			{"redirect to a refused address", pages.URL + "/redirect-metadata", 403, "M_FORBIDDEN", nil},
			{"private address", "http://10.0.0.1/", 403, "M_FORBIDDEN", nil},
			{"not http", "ftp://127.0.0.1/", 400, "M_INVALID_PARAM", nil},
			{"relative", "/sub/test.html", 400, "M_INVALID_PARAM", nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				rec := s.raw("GET", previewPath(mediaC1, tc.target), s.alice, "", nil, 0)
				if tc.code != "" {
					expectErr(t, rec, tc.status, tc.code)
					return
				}
				if rec.Code != tc.status {
					t.Fatalf("%d %s", rec.Code, rec.Body.String())
				}
				tc.check(t, jsonOf(t, rec))
			})
		}

		// Parameters and authentication.
		expectErr(t, s.raw("GET", mediaC1+"/preview_url", s.alice, "", nil, 0), 400, "M_MISSING_PARAM")
		expectErr(t, s.raw("GET", previewPath(mediaC1, pages.URL+"/sub/test.html")+"&ts=soon", s.alice, "", nil, 0), 400, "M_INVALID_PARAM")
		if rec := s.raw("GET", previewPath(mediaC1, pages.URL+"/sub/test.html")+"&ts=1510610716656", s.alice, "", nil, 0); rec.Code != 200 {
			t.Errorf("with ts: %d %s", rec.Code, rec.Body.String())
		}
		expectErr(t, s.raw("GET", previewPath(mediaC1, pages.URL+"/sub/test.html"), "", "", nil, 0), 401, "M_MISSING_TOKEN")
		expectErr(t, s.raw("GET", previewPath(mediaV3, pages.URL+"/sub/test.html"), "", "", nil, 0), 401, "M_MISSING_TOKEN")
	})
}

// TestURLPreviewDenied: without an allow-list, loopback, private,
// link-local and metadata addresses are refused, by IP literal or by a
// name resolving to one, and never contacted.
func TestURLPreviewDenied(t *testing.T) {
	pages := newPageServer(t)
	port := netip.MustParseAddrPort(strings.TrimPrefix(pages.URL, "http://")).Port()
	eachPreviewEngine(t, nil, nil, func(t *testing.T, s *mediaServer) {
		for _, target := range []string{
			"http://10.0.0.1/",
			"http://169.254.169.254/latest/meta-data/",
			fmt.Sprintf("http://[::1]:%d/sub/test.html", port),
			fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/sub/test.html", port),
			pages.URL + "/sub/test.html",
			fmt.Sprintf("http://localhost:%d/sub/test.html", port),
		} {
			expectErr(t, s.raw("GET", previewPath(mediaC1, target), s.alice, "", nil, 0), 403, "M_FORBIDDEN")
		}
		if n := pages.total(); n != 0 {
			t.Errorf("refused addresses were contacted %d times", n)
		}
	})
}

// TestURLPreviewLimits: an image over the upload limit or the user's quota
// is left out of the preview; the URL of such an image is the limit's error.
func TestURLPreviewLimits(t *testing.T) {
	pages := newPageServer(t)
	eachPreviewEngine(t, []string{"127.0.0.1"}, func(m *config.Media) { m.UserQuota = 100 }, func(t *testing.T, s *mediaServer) {
		rec := s.raw("GET", previewPath(mediaC1, pages.URL+"/sub/test.html"), s.alice, "", nil, 0)
		og := jsonOf(t, rec)
		if rec.Code != 200 || og["og:title"] != "The Rock" || og["og:image"] != nil || og["matrix:image:size"] != nil {
			t.Fatalf("over quota: %d %v", rec.Code, og)
		}
		expectErr(t, s.raw("GET", previewPath(mediaC1, pages.URL+"/sub/test.png"), s.alice, "", nil, 0), 403, "M_USER_LIMIT_EXCEEDED")
	})
	eachPreviewEngine(t, []string{"127.0.0.1"}, func(m *config.Media) { m.MaxUploadSize = 100 }, func(t *testing.T, s *mediaServer) {
		rec := s.raw("GET", previewPath(mediaC1, pages.URL+"/sub/test.html"), s.alice, "", nil, 0)
		og := jsonOf(t, rec)
		if rec.Code != 200 || og["og:title"] != "The Rock" || og["og:image"] != nil {
			t.Fatalf("too large: %d %v", rec.Code, og)
		}
	})
}

func TestURLPreviewOff(t *testing.T) {
	pages := newPageServer(t)
	eachPreviewEngine(t, []string{"127.0.0.0/8"}, func(m *config.Media) { m.URLPreviews = false }, func(t *testing.T, s *mediaServer) {
		for _, prefix := range []string{mediaC1, mediaV3} {
			expectErr(t, s.raw("GET", previewPath(prefix, pages.URL+"/sub/test.html"), s.alice, "", nil, 0), 404, "M_UNRECOGNIZED")
		}
		if n := pages.total(); n != 0 {
			t.Errorf("fetched %d times with previews off", n)
		}
	})
}
