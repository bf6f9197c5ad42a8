package media

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// testImage is a w x h gradient (so scaling has something to average).
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	return img
}

func encodePNG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testImage(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := gif.Encode(&b, testImage(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tinyWebP is a 1x1 lossy WebP (x/image has no WebP encoder).
var tinyWebP, _ = base64.StdEncoding.DecodeString("UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA")

// pngHeaderOnly is a PNG whose header claims w x h (valid checksum, no
// pixel data): what a decompression bomb looks like to DecodeConfig.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := append([]byte("IHDR"), ihdr...)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestSnap(t *testing.T) {
	for _, tc := range []struct{ w, h, ww, wh int }{
		{1, 1, 32, 32}, {32, 32, 32, 32}, {33, 10, 96, 96}, {96, 96, 96, 96},
		{100, 50, 320, 240}, {320, 240, 320, 240}, {321, 100, 640, 480},
		{800, 600, 800, 600}, {5000, 5000, 800, 600},
	} {
		if got := snap(tc.w, tc.h); got.w != tc.ww || got.h != tc.wh {
			t.Errorf("snap(%d,%d) = %dx%d, want %dx%d", tc.w, tc.h, got.w, got.h, tc.ww, tc.wh)
		}
	}
}

func TestMakeThumbnail(t *testing.T) {
	png1000 := encodePNG(t, 1000, 500)
	jpg1000 := encodeJPEG(t, 1000, 500)
	gif400 := encodeGIF(t, 400, 300)
	png20 := encodePNG(t, 20, 20)
	for _, tc := range []struct {
		name, ct, method string
		src              []byte
		box              thumbSize
		wantW, wantH     int
		wantCT           string
		original         bool
		err              error
	}{
		{"png crop 96", "image/png", "crop", png1000, thumbSize{96, 96}, 96, 96, "image/png", false, nil},
		{"png scale 320x240", "image/png", "scale", png1000, thumbSize{320, 240}, 320, 160, "image/png", false, nil},
		{"png crop 320x240", "image/png", "crop", png1000, thumbSize{320, 240}, 320, 240, "image/png", false, nil},
		{"jpeg stays jpeg", "image/jpeg", "scale", jpg1000, thumbSize{640, 480}, 640, 320, "image/jpeg", false, nil},
		{"jpeg crop 32", "image/jpeg", "crop", jpg1000, thumbSize{32, 32}, 32, 32, "image/jpeg", false, nil},
		{"gif becomes png", "image/gif", "scale", gif400, thumbSize{320, 240}, 320, 240, "image/png", false, nil},
		// Never upscale: content within the box comes back as it is.
		{"small png is the original", "image/png", "crop", png20, thumbSize{32, 32}, 0, 0, "image/png", true, nil},
		{"tiny webp is the original", "image/webp", "scale", tinyWebP, thumbSize{32, 32}, 0, 0, "image/webp", true, nil},
		// crop from a source narrower than the box: crop only what exists.
		{"crop narrower source", "image/png", "crop", encodePNG(t, 50, 200), thumbSize{96, 96}, 50, 96, "image/png", false, nil},
		// Only the decoder the stored type names runs.
		{"png bytes stored as jpeg", "image/jpeg", "scale", png1000, thumbSize{32, 32}, 0, 0, "", false, errNotThumbnailable},
		{"svg type", "image/svg+xml", "scale", []byte("<svg/>"), thumbSize{32, 32}, 0, 0, "", false, errNotThumbnailable},
		{"html type", "text/html", "scale", []byte("<html>"), thumbSize{32, 32}, 0, 0, "", false, errNotThumbnailable},
		{"garbage png", "image/png", "scale", []byte("not a png"), thumbSize{32, 32}, 0, 0, "", false, errNotThumbnailable},
		{"truncated png", "image/png", "scale", png1000[:200], thumbSize{32, 32}, 0, 0, "", false, errNotThumbnailable},
		{"bomb header", "image/png", "scale", pngHeaderOnly(100000, 100000), thumbSize{32, 32}, 0, 0, "", false, errTooManyPixels},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := makeThumbnail(tc.src, tc.ct, tc.box, tc.method, 40_000_000)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.original != tc.original || res.contentType != tc.wantCT {
				t.Fatalf("original %v type %s, want %v %s", res.original, res.contentType, tc.original, tc.wantCT)
			}
			if tc.original {
				return
			}
			var cfg image.Config
			if tc.wantCT == "image/jpeg" {
				cfg, err = jpeg.DecodeConfig(bytes.NewReader(res.data))
			} else {
				cfg, err = png.DecodeConfig(bytes.NewReader(res.data))
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Width != tc.wantW || cfg.Height != tc.wantH {
				t.Fatalf("thumbnail %dx%d, want %dx%d", cfg.Width, cfg.Height, tc.wantW, tc.wantH)
			}
		})
	}
	// The pixel limit is checked before decoding, on a real image too.
	if _, err := makeThumbnail(png1000, "image/png", thumbSize{32, 32}, "crop", 1000*500-1); !errors.Is(err, errTooManyPixels) {
		t.Fatalf("over the pixel limit: %v", err)
	}
}

// FuzzThumbnail feeds arbitrary bytes to every decoder: it must never
// panic, and with a 1-megapixel limit the decoded image (the memory
// bound) can never exceed that limit.
func FuzzThumbnail(f *testing.F) {
	f.Add(encodePNG(f, 64, 48), uint8(0))
	f.Add(encodeJPEG(f, 64, 48), uint8(1))
	f.Add(encodeGIF(f, 64, 48), uint8(2))
	f.Add(tinyWebP, uint8(3))
	f.Add(pngHeaderOnly(1<<20, 1<<20), uint8(0))
	types := []string{"image/png", "image/jpeg", "image/gif", "image/webp"}
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		ct := types[int(which)%len(types)]
		for _, m := range []string{"crop", "scale"} {
			res, err := makeThumbnail(data, ct, thumbSize{32, 32}, m, limit)
			if err != nil || res.original {
				continue
			}
			var cfg image.Config
			if res.contentType == "image/jpeg" {
				cfg, err = jpeg.DecodeConfig(bytes.NewReader(res.data))
			} else {
				cfg, err = png.DecodeConfig(bytes.NewReader(res.data))
			}
			if err != nil || cfg.Width > 32 || cfg.Height > 32 || cfg.Width < 1 || cfg.Height < 1 {
				t.Fatalf("bad thumbnail %dx%d: %v", cfg.Width, cfg.Height, err)
			}
		}
	})
}
