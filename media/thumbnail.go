package media

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Thumbnail errors, mapped to the spec's codes by the service.
var (
	// errNotThumbnailable: not one of the four image types, or bytes that
	// are not the image their type says.
	errNotThumbnailable = errors.New("media: cannot thumbnail this content")
	// errTooManyPixels: the header announces more pixels than allowed.
	errTooManyPixels = errors.New("media: image too large to thumbnail")
)

// codec is one image format we decode: only these four, each through its
// own package, so a file can never reach a decoder other than the one its
// stored content type names (image.Decode would pick by magic bytes from
// every registered format).
type codec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
	// jpegOut: thumbnails of photos stay JPEG (small); the others become
	// PNG, which keeps transparency.
	jpegOut bool
}

var codecs = map[string]codec{
	"image/png":  {config: png.DecodeConfig, decode: png.Decode},
	"image/jpeg": {config: jpeg.DecodeConfig, decode: jpeg.Decode, jpegOut: true},
	// gif.Decode returns the first frame only; animated thumbnails are not
	// produced (the spec's "animated" is a SHOULD).
	"image/gif":  {config: gif.DecodeConfig, decode: gif.Decode},
	"image/webp": {config: webp.DecodeConfig, decode: webp.Decode},
}

// Thumbnailable reports whether content of this (normalised) type may be
// thumbnailed at all.
func Thumbnailable(contentType string) bool {
	_, ok := codecs[contentType]
	return ok
}

// thumbSize is one size thumbnails are made at.
type thumbSize struct{ w, h int }

// thumbSizes are the spec's recommended sizes. Requests snap up to the
// smallest that covers them (the spec: never smaller than requested), so a
// client cannot make the server render and cache every possible size.
var thumbSizes = []thumbSize{{32, 32}, {96, 96}, {320, 240}, {640, 480}, {800, 600}}

// snap returns the thumbnail size serving a request for w x h.
func snap(w, h int) thumbSize {
	for _, s := range thumbSizes {
		if s.w >= w && s.h >= h {
			return s
		}
	}
	return thumbSizes[len(thumbSizes)-1]
}

// thumbResult is a rendered thumbnail, or the original when it is no larger
// than the requested box (the spec: return the original rather than
// thumbnail it; never upscale).
type thumbResult struct {
	original    bool
	data        []byte
	contentType string
}

// makeThumbnail renders src (of contentType) to fit box with method "crop"
// or "scale". The header is read first: an image with more than maxPixels
// pixels is refused before any pixel is decoded.
func makeThumbnail(src []byte, contentType string, box thumbSize, method string, maxPixels int64) (thumbResult, error) {
	c, ok := codecs[contentType]
	if !ok {
		return thumbResult{}, errNotThumbnailable
	}
	cfg, err := c.config(bytes.NewReader(src))
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return thumbResult{}, errNotThumbnailable
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return thumbResult{}, errTooManyPixels
	}
	if cfg.Width <= box.w && cfg.Height <= box.h {
		return thumbResult{original: true, contentType: contentType}, nil
	}
	img, err := c.decode(bytes.NewReader(src))
	if err != nil {
		return thumbResult{}, errNotThumbnailable
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= 0 || sh <= 0 || int64(sw)*int64(sh) > maxPixels {
		return thumbResult{}, errNotThumbnailable
	}
	var dst *image.RGBA
	switch method {
	case "crop":
		// Scale so the image covers the box, then cut the box from the
		// centre: the result has the requested aspect.
		f := max(float64(box.w)/float64(sw), float64(box.h)/float64(sh))
		f = min(f, 1)
		tw, th := max(1, int(float64(sw)*f+0.5)), max(1, int(float64(sh)*f+0.5))
		cw, ch := min(box.w, tw), min(box.h, th)
		// Map the centred crop back to source pixels and scale just that.
		srcW, srcH := int(float64(cw)/f+0.5), int(float64(ch)/f+0.5)
		srcW, srcH = min(max(srcW, 1), sw), min(max(srcH, 1), sh)
		x0, y0 := b.Min.X+(sw-srcW)/2, b.Min.Y+(sh-srcH)/2
		dst = image.NewRGBA(image.Rect(0, 0, cw, ch))
		draw.CatmullRom.Scale(dst, dst.Bounds(), img, image.Rect(x0, y0, x0+srcW, y0+srcH), draw.Src, nil)
	default: // "scale": fit inside the box, keeping the aspect
		f := min(float64(box.w)/float64(sw), float64(box.h)/float64(sh), 1)
		tw, th := max(1, int(float64(sw)*f+0.5)), max(1, int(float64(sh)*f+0.5))
		dst = image.NewRGBA(image.Rect(0, 0, tw, th))
		draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	}
	var out bytes.Buffer
	if c.jpegOut {
		if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 85}); err != nil {
			return thumbResult{}, fmt.Errorf("encode thumbnail: %w", err)
		}
		return thumbResult{data: out.Bytes(), contentType: "image/jpeg"}, nil
	}
	if err := png.Encode(&out, dst); err != nil {
		return thumbResult{}, fmt.Errorf("encode thumbnail: %w", err)
	}
	return thumbResult{data: out.Bytes(), contentType: "image/png"}, nil
}
