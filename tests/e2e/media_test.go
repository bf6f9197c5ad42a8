package e2e

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// mediaPNG is a w x h PNG with a gradient (so thumbnails are real work).
func mediaPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 3), uint8(y * 5), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// download fetches media through mautrix (the authenticated
// /_matrix/client/v1/media/download) and returns body and headers.
func download(t *testing.T, c *mautrix.Client, mxc id.ContentURI) ([]byte, http.Header) {
	t.Helper()
	resp, err := c.Download(context.Background(), mxc)
	if err != nil {
		t.Fatalf("download %s: %v", mxc, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, resp.Header
}

func wantSandboxed(t *testing.T, what string, h http.Header, contentType, disposition string) {
	t.Helper()
	if got := h.Get("Content-Type"); got != contentType {
		t.Errorf("%s: Content-Type %q, want %q", what, got, contentType)
	}
	if kind, _, err := mime.ParseMediaType(h.Get("Content-Disposition")); err != nil || kind != disposition {
		t.Errorf("%s: Content-Disposition %q, want %s", what, h.Get("Content-Disposition"), disposition)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, h.Get("X-Content-Type-Options"))
	}
	if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox;") || !strings.Contains(csp, "script-src 'none'") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
	if h.Get("Cross-Origin-Resource-Policy") != "cross-origin" {
		t.Errorf("%s: Cross-Origin-Resource-Policy %q", what, h.Get("Cross-Origin-Resource-Policy"))
	}
}

// TestMedia drives the media repository as Element does: upload, download,
// thumbnails, async upload, and the limits, on both engines.
func TestMedia(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine, Set: map[string]any{
			"media.max_upload_size": 200_000,
			"media.user_quota":      250_000,
		}})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		pic := mediaPNG(t, 640, 400)
		var picURI id.ContentURI

		step(t, "config", func(t *testing.T) {
			cfg, err := alice.c.GetMediaConfig(ctx)
			if err != nil || cfg.UploadSize != 200_000 {
				t.Fatalf("config %+v %v", cfg, err)
			}
		})

		step(t, "upload, download, thumbnail", func(t *testing.T) {
			up, err := alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: pic, ContentType: "image/png", FileName: "x-ray.png"})
			if err != nil {
				t.Fatal(err)
			}
			picURI = up.ContentURI
			if picURI.Homeserver != testserver.ServerName || len(picURI.FileID) != 24 {
				t.Fatalf("content URI %s", picURI)
			}
			// Another user downloads it: the URI is the capability.
			body, h := download(t, bob.c, picURI)
			if !bytes.Equal(body, pic) {
				t.Fatalf("downloaded %d bytes, uploaded %d", len(body), len(pic))
			}
			wantSandboxed(t, "png", h, "image/png", "inline")
			if _, p, _ := mime.ParseMediaType(h.Get("Content-Disposition")); p["filename"] != "x-ray.png" {
				t.Errorf("filename %q", p["filename"])
			}
			for _, tc := range []struct {
				w, h         int
				method       string
				wantW, wantH int
			}{
				{96, 96, "crop", 96, 96},
				{320, 240, "scale", 320, 200},
				{32, 32, "crop", 32, 32},
			} {
				for range 2 { // generated, then cached
					resp, err := bob.c.DownloadThumbnail(ctx, picURI, tc.h, tc.w, mautrix.DownloadThumbnailExtra{Method: tc.method})
					if err != nil {
						t.Fatalf("thumbnail %dx%d %s: %v", tc.w, tc.h, tc.method, err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					cfg, err := png.DecodeConfig(bytes.NewReader(b))
					if err != nil || cfg.Width != tc.wantW || cfg.Height != tc.wantH {
						t.Fatalf("thumbnail %dx%d %s: %dx%d %v", tc.w, tc.h, tc.method, cfg.Width, cfg.Height, err)
					}
					wantSandboxed(t, "thumbnail", resp.Header, "image/png", "inline")
				}
			}
		})

		step(t, "SVG and HTML are attachments", func(t *testing.T) {
			for _, tc := range []struct{ ct, name, body string }{
				{"image/svg+xml", "logo.svg", `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>`},
				{"text/html", "invoice.html", `<html><body onload="alert(1)">pay here</body></html>`},
			} {
				up, err := alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: []byte(tc.body), ContentType: tc.ct, FileName: tc.name})
				if err != nil {
					t.Fatal(err)
				}
				body, h := download(t, bob.c, up.ContentURI)
				if string(body) != tc.body {
					t.Fatalf("%s: body changed", tc.ct)
				}
				wantSandboxed(t, tc.ct, h, tc.ct, "attachment")
				// Not an image we decode: no thumbnail, whatever it claims.
				_, err = bob.c.DownloadThumbnail(ctx, up.ContentURI, 32, 32)
				wantMatrixErr(t, tc.ct+" thumbnail", err, 400, "M_UNKNOWN")
			}
		})

		step(t, "traversal attempts read nothing", func(t *testing.T) {
			// A file beside the store that must stay unreachable.
			secret := "CONFIDENTIAL PATIENT RECORD"
			if err := os.WriteFile(filepath.Join(srv.Config.Get("data_dir").(string), "secret.txt"), []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			const dl = "/_matrix/client/v1/media/download/"
			for _, p := range []string{
				dl + testserver.ServerName + "/..%2Fsecret.txt",
				dl + testserver.ServerName + "/..%2F..%2Fsecret.txt",
				dl + testserver.ServerName + "/%2e%2e%2fsecret.txt",
				dl + testserver.ServerName + "/%2e%2e",
				dl + testserver.ServerName + "/%2Fetc%2Fpasswd",
				dl + testserver.ServerName + "/" + picURI.FileID + "%00",
				dl + testserver.ServerName + "/%252e%252e%252fsecret.txt",
				dl + "..%2F..%2F/" + picURI.FileID,
				dl + testserver.ServerName + "/../../secret.txt",
				"/_matrix/client/v1/media/thumbnail/" + testserver.ServerName + "/..%2Fsecret.txt?width=32&height=32",
			} {
				r := srv.Do(t, "GET", p, alice.Token, nil)
				if r.Status != 404 && r.Status != 400 {
					t.Errorf("%s: status %d", p, r.Status)
				}
				if r.Errcode() == "" || bytes.Contains(r.Body, []byte(secret)) || bytes.Contains(r.Body, pic[:16]) {
					t.Errorf("%s: answered %d %q", p, r.Status, r.Body)
				}
			}
			// Remote media (no federation yet) and the frozen legacy endpoint.
			wantResp(t, "remote", srv.Do(t, "GET", dl+"elsewhere.example/"+picURI.FileID, alice.Token, nil), 404, "M_NOT_FOUND")
			wantResp(t, "legacy", srv.Do(t, "GET", "/_matrix/media/v3/download/"+testserver.ServerName+"/"+picURI.FileID, "", nil), 404, "M_NOT_FOUND")
			wantResp(t, "no token", srv.Do(t, "GET", dl+testserver.ServerName+"/"+picURI.FileID, "", nil), 401, "M_MISSING_TOKEN")
		})

		step(t, "async upload", func(t *testing.T) {
			created, err := alice.c.CreateMXC(ctx)
			if err != nil || created.UnusedExpiresAt.IsZero() {
				t.Fatalf("create %+v %v", created, err)
			}
			r := srv.Do(t, "GET", "/_matrix/client/v1/media/download/"+created.ContentURI.Homeserver+"/"+created.ContentURI.FileID+"?timeout_ms=100", alice.Token, nil)
			wantResp(t, "not yet uploaded", r, 504, "M_NOT_YET_UPLOADED")
			_, err = bob.c.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: created.ContentURI, ContentBytes: []byte("bob's"), ContentType: "text/plain"})
			wantMatrixErr(t, "another user's media ID", err, 403, "M_FORBIDDEN")
			if _, err := alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: created.ContentURI, ContentBytes: []byte("lab results"), ContentType: "text/plain", FileName: "lab.txt"}); err != nil {
				t.Fatal(err)
			}
			_, err = alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: created.ContentURI, ContentBytes: []byte("again"), ContentType: "text/plain"})
			wantMatrixErr(t, "second upload", err, 409, "M_CANNOT_OVERWRITE_MEDIA")
			body, h := download(t, bob.c, created.ContentURI)
			if string(body) != "lab results" {
				t.Fatalf("body %q", body)
			}
			wantSandboxed(t, "text", h, "text/plain", "inline")
		})

		step(t, "size limit and quota", func(t *testing.T) {
			_, err := alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: make([]byte, 200_001), ContentType: "application/octet-stream"})
			wantMatrixErr(t, "over the size limit", err, 413, "M_TOO_LARGE")
			// alice has uploaded pic and a few small files (< 100 kB); two
			// more of 150 kB pass 250 kB.
			if len(pic) > 90_000 {
				t.Fatalf("test image %d bytes: the quota arithmetic needs < 90 kB", len(pic))
			}
			big := bytes.Repeat([]byte("z"), 150_000)
			if _, err := alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: big, ContentType: "application/pdf"}); err != nil {
				t.Fatal(err)
			}
			big[0] = 'y' // different content, so it is not free by dedupe either
			_, err = alice.c.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: big, ContentType: "application/pdf"})
			wantMatrixErr(t, "over quota", err, 403, "M_USER_LIMIT_EXCEEDED")
			// bob's quota is his own.
			if _, err := bob.c.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: big, ContentType: "application/pdf"}); err != nil {
				t.Fatal(err)
			}
		})

		step(t, "media survives kill -9", func(t *testing.T) {
			// Acknowledged uploads were fsynced before their rows committed.
			srv.Kill()
			srv.Restart()
			body, _ := download(t, bob.c, picURI)
			if !bytes.Equal(body, pic) {
				t.Fatal("media changed across a restart")
			}
		})
	})
}
