package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"myelin/storage"
)

func TestMediaUploadQuotaAndThumbnails(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		m := storage.NewMedia(db)
		rec := storage.MediaRecord{Server: "hs", MediaID: "m1", Uploader: "@alice:hs", ContentType: "image/png",
			Filename: "cat.png", Size: 60, SHA256: "aa", CreatedTS: 1000}
		if err := m.InsertMedia(ctx, rec, 100); err != nil {
			t.Fatal(err)
		}
		got, err := m.GetMedia(ctx, "hs", "m1")
		if err != nil || got != rec {
			t.Fatalf("get: %+v %v", got, err)
		}
		if got.Pending() {
			t.Fatal("uploaded media reported pending")
		}
		if _, err := m.GetMedia(ctx, "other", "m1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("other server: %v", err)
		}
		// Same ID again: conflict, and the usage is not charged twice.
		if err := m.InsertMedia(ctx, rec, 1000); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("duplicate: %v", err)
		}
		// 60 + 50 > 100: refused, nothing stored, usage unchanged.
		over := rec
		over.MediaID, over.Size, over.SHA256 = "m2", 50, "bb"
		if err := m.InsertMedia(ctx, over, 100); !errors.Is(err, storage.ErrMediaQuota) {
			t.Fatalf("over quota: %v", err)
		}
		if _, err := m.GetMedia(ctx, "hs", "m2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("refused upload stored: %v", err)
		}
		if used, err := m.Usage(ctx, "@alice:hs"); err != nil || used != 60 {
			t.Fatalf("usage %d %v", used, err)
		}
		// Quota 0 means none; another user has their own usage.
		if err := m.InsertMedia(ctx, over, 0); err != nil {
			t.Fatal(err)
		}
		bob := storage.MediaRecord{Server: "hs", MediaID: "m3", Uploader: "@bob:hs", ContentType: "text/plain", Size: 90, SHA256: "aa", CreatedTS: 1}
		if err := m.InsertMedia(ctx, bob, 100); err != nil {
			t.Fatal(err)
		}
		for user, want := range map[string]int64{"@alice:hs": 110, "@bob:hs": 90, "@carol:hs": 0} {
			if used, err := m.Usage(ctx, user); err != nil || used != want {
				t.Fatalf("usage of %s: %d %v, want %d", user, used, err, want)
			}
		}

		// Thumbnails: cached per size and method; the first insert wins.
		th := storage.Thumbnail{Server: "hs", MediaID: "m1", Width: 96, Height: 96, Method: "crop", ContentType: "image/png", Size: 10, SHA256: "cc", CreatedTS: 5}
		if _, err := m.GetThumbnail(ctx, "hs", "m1", 96, 96, "crop"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("missing thumbnail: %v", err)
		}
		if err := m.InsertThumbnail(ctx, th); err != nil {
			t.Fatal(err)
		}
		again := th
		again.SHA256 = "dd"
		if err := m.InsertThumbnail(ctx, again); err != nil {
			t.Fatal(err)
		}
		if got, err := m.GetThumbnail(ctx, "hs", "m1", 96, 96, "crop"); err != nil || got != th {
			t.Fatalf("thumbnail %+v %v", got, err)
		}
		if _, err := m.GetThumbnail(ctx, "hs", "m1", 96, 96, "scale"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("other method: %v", err)
		}
		for sha, want := range map[string]bool{"aa": true, "bb": true, "cc": true, "dd": false, "": false} {
			if got, err := m.SHA256Referenced(ctx, sha); err != nil || got != want {
				t.Fatalf("referenced(%q) = %v %v, want %v", sha, got, err, want)
			}
		}
	})
}

func TestMediaPendingUploads(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		m := storage.NewMedia(db)
		pending := func(id string, expires int64) storage.MediaRecord {
			return storage.MediaRecord{Server: "hs", MediaID: id, Uploader: "@alice:hs", CreatedTS: 100, ExpiresTS: expires}
		}
		for i, id := range []string{"p1", "p2"} {
			if _, err := m.CreatePending(ctx, pending(id, int64(1000+i)), 100, 2); err != nil {
				t.Fatal(err)
			}
		}
		got, err := m.GetMedia(ctx, "hs", "p1")
		if err != nil || !got.Pending() || got.ExpiresTS != 1000 {
			t.Fatalf("pending row %+v %v", got, err)
		}
		// A third is over the limit; the earliest expiry says when a slot frees.
		earliest, err := m.CreatePending(ctx, pending("p3", 2000), 100, 2)
		if !errors.Is(err, storage.ErrMediaPendingLimit) || earliest != 1000 {
			t.Fatalf("over the pending limit: %d %v", earliest, err)
		}
		// Once p1 expired it is dropped and frees its slot.
		if _, err := m.CreatePending(ctx, pending("p3", 2000), 1000, 2); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
		if _, err := m.GetMedia(ctx, "hs", "p1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("expired pending row kept: %v", err)
		}

		up := storage.MediaRecord{Server: "hs", MediaID: "p2", Uploader: "@alice:hs", ContentType: "image/png", Filename: "a.png", Size: 40, SHA256: "ee"}
		for _, tc := range []struct {
			name string
			rec  storage.MediaRecord
			now  int64
			want error
		}{
			{"unknown", storage.MediaRecord{Server: "hs", MediaID: "nope", Uploader: "@alice:hs", SHA256: "ee"}, 500, storage.ErrNotFound},
			{"other user", storage.MediaRecord{Server: "hs", MediaID: "p2", Uploader: "@bob:hs", SHA256: "ee"}, 500, storage.ErrMediaNotUploader},
			{"expired", up, 1001, storage.ErrNotFound},
			{"over quota", up, 500, storage.ErrMediaQuota},
		} {
			quota := int64(0)
			if tc.want == storage.ErrMediaQuota {
				quota = 39
			}
			if err := m.CompletePending(ctx, tc.rec, tc.now, quota); !errors.Is(err, tc.want) {
				t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		if got, _ := m.GetMedia(ctx, "hs", "p2"); !got.Pending() {
			t.Fatal("refused completions changed the row")
		}
		if err := m.CompletePending(ctx, up, 500, 100); err != nil {
			t.Fatal(err)
		}
		got, err = m.GetMedia(ctx, "hs", "p2")
		if err != nil || got.Pending() || got.SHA256 != "ee" || got.Size != 40 || got.ContentType != "image/png" || got.Filename != "a.png" || got.ExpiresTS != 0 || got.CreatedTS != 100 {
			t.Fatalf("completed row %+v %v", got, err)
		}
		if used, _ := m.Usage(ctx, "@alice:hs"); used != 40 {
			t.Fatalf("usage %d", used)
		}
		// Only once.
		if err := m.CompletePending(ctx, up, 500, 100); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("second upload: %v", err)
		}
		// An uploaded ID no longer counts as pending.
		if _, err := m.CreatePending(ctx, pending("p4", 3000), 600, 2); err != nil {
			t.Fatalf("slot after upload: %v", err)
		}
	})
}

// TestMediaQuotaConcurrent: uploads racing for the last of a quota never
// pass it together.
func TestMediaQuotaConcurrent(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		m := storage.NewMedia(db)
		const n, size, quota = 12, 10, 55
		errs := make(chan error, n)
		for i := range n {
			go func() {
				errs <- m.InsertMedia(ctx, storage.MediaRecord{Server: "hs", MediaID: fmt.Sprintf("c%d", i), Uploader: "@alice:hs",
					ContentType: "text/plain", Size: size, SHA256: "ff", CreatedTS: 1}, quota)
			}()
		}
		ok := 0
		for range n {
			switch err := <-errs; {
			case err == nil:
				ok++
			case !errors.Is(err, storage.ErrMediaQuota):
				t.Fatalf("unexpected error: %v", err)
			}
		}
		used, err := m.Usage(ctx, "@alice:hs")
		if ok != quota/size || err != nil || used != int64(ok*size) {
			t.Fatalf("%d uploads passed, usage %d (%v); want %d and %d", ok, used, err, quota/size, quota/size*size)
		}
	})
}
