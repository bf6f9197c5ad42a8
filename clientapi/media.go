package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/media"
)

// mediaAPI serves the content repository: uploads under /_matrix/media,
// downloads and thumbnails under /_matrix/client/v1/media (authenticated).
type mediaAPI struct {
	*api
	media *media.Service
}

// defaultWait is timeout_ms's default (the spec: 20 seconds).
const defaultWait = 20 * time.Second

func (a *api) registerMediaRoutes(r *httpapi.Routes, svc *media.Service) {
	if svc == nil {
		return
	}
	m := &mediaAPI{api: a, media: svc}
	handle := r.Handle
	const legacy, v1media, cv1 = "/_matrix/media/v3", "/_matrix/media/v1", "/_matrix/client/v1/media"
	handle(http.MethodPost, legacy+"/upload", a.authed(m.upload))
	handle(http.MethodPut, legacy+"/upload/{serverName}/{mediaId}", a.authed(m.uploadTo))
	handle(http.MethodPost, v1media+"/create", a.authed(m.create))

	handle(http.MethodGet, cv1+"/config", a.authed(m.config))
	handle(http.MethodGet, cv1+"/download/{serverName}/{mediaId}", a.authed(m.download))
	handle(http.MethodGet, cv1+"/download/{serverName}/{mediaId}/{fileName}", a.authed(m.download))
	handle(http.MethodGet, cv1+"/thumbnail/{serverName}/{mediaId}", a.authed(m.thumbnail))
	// URL previews, when media.url_previews is on (otherwise the router
	// answers 404 M_UNRECOGNIZED). The deprecated v3 one is authenticated
	// too and not part of the download freeze.
	if svc.PreviewsEnabled() {
		handle(http.MethodGet, cv1+"/preview_url", a.authed(m.previewURL))
		handle(http.MethodGet, legacy+"/preview_url", a.authed(m.previewURL))
	}

	// The deprecated /config carries no media, so the freeze below does not
	// concern it; the spec still defines it (authenticated, like v1).
	handle(http.MethodGet, legacy+"/config", a.authed(m.config))
	// The unauthenticated download endpoints are frozen unless the admin
	// turned media.legacy_unauthenticated_downloads on. The spec (content
	// repository, v1.11): "By Matrix 1.12, servers SHOULD "freeze" the
	// deprecated, unauthenticated, endpoints to prevent newly-uploaded
	// media from being downloaded. This SHOULD mean that any media
	// uploaded *before* the freeze remains accessible via the deprecated
	// endpoints, and any media uploaded *after* (or *during*) the freeze
	// SHOULD only be accessible through the new, authenticated,
	// endpoints." and for each of them: "This endpoint MAY return
	// `404 M_NOT_FOUND` for media which exists, but is after the server
	// froze unauthenticated media access." Myelin froze from its first
	// upload, so no media predates the freeze: every request is 404.
	frozen := a.handle(func(w http.ResponseWriter, r *http.Request) error {
		return apierr.NotFound("Unauthenticated media access is frozen; use /_matrix/client/v1/media")
	})
	download, thumbnail := frozen, frozen
	if a.cfg.Media.LegacyUnauthenticatedDownloads {
		download = a.handle(func(w http.ResponseWriter, r *http.Request) error { return m.download(w, r, nil) })
		thumbnail = a.handle(func(w http.ResponseWriter, r *http.Request) error { return m.thumbnail(w, r, nil) })
	}
	handle(http.MethodGet, legacy+"/download/{serverName}/{mediaId}", download)
	handle(http.MethodGet, legacy+"/download/{serverName}/{mediaId}/{fileName}", download)
	handle(http.MethodGet, legacy+"/thumbnail/{serverName}/{mediaId}", thumbnail)
}

func (m *mediaAPI) config(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"m.upload.size": m.media.MaxUploadSize()})
	return nil
}

// uploadOf is the upload a request carries.
func uploadOf(r *http.Request) media.Upload {
	return media.Upload{Body: r.Body, ContentLength: r.ContentLength,
		ContentType: r.Header.Get("Content-Type"), Filename: r.URL.Query().Get("filename")}
}

func (m *mediaAPI) upload(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	uri, err := m.media.Upload(r.Context(), c.UserID, uploadOf(r))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"content_uri": uri})
	return nil
}

func (m *mediaAPI) create(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	uri, expires, err := m.media.Create(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"content_uri": uri, "unused_expires_at": expires})
	return nil
}

// ids reads and checks the serverName and mediaId path variables; a
// malformed escape or a value outside the allowed grammar is 404 before
// anything is looked up.
func ids(r *http.Request) (server, mediaID string, err error) {
	server, err1 := httpapi.Var(r, "serverName")
	mediaID, err2 := httpapi.Var(r, "mediaId")
	if err1 != nil || err2 != nil || !media.ValidServerName(server) || !media.ValidMediaID(mediaID) {
		return "", "", apierr.NotFound("Unknown media ID")
	}
	return server, mediaID, nil
}

func (m *mediaAPI) uploadTo(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	server, mediaID, err := ids(r)
	if err != nil {
		return err
	}
	if err := m.media.UploadTo(r.Context(), c.UserID, server, mediaID, uploadOf(r)); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// wait reads timeout_ms (default 20 s; the service caps it).
func wait(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("timeout_ms")
	if s == "" {
		return defaultWait, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 {
		return 0, apierr.InvalidParam("timeout_ms must be a non-negative integer")
	}
	return time.Duration(min(ms, media.MaxWait.Milliseconds())) * time.Millisecond, nil
}

func (m *mediaAPI) download(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	server, mediaID, err := ids(r)
	if err != nil {
		return err
	}
	d, err := wait(r)
	if err != nil {
		return err
	}
	name, named := mux.Vars(r)["fileName"]
	if named {
		// The spec: the file name in the path is what the response's
		// Content-Disposition names.
		if name, err = httpapi.Var(r, "fileName"); err != nil {
			return err
		}
		if err := media.CheckFilename(name); err != nil {
			return err
		}
	}
	content, err := m.media.Download(r.Context(), server, mediaID, d)
	if err != nil {
		return err
	}
	if named {
		content.Filename = name
	}
	serve(w, r, content)
	return nil
}

func (m *mediaAPI) thumbnail(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	server, mediaID, err := ids(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	width, err1 := strconv.Atoi(q.Get("width"))
	height, err2 := strconv.Atoi(q.Get("height"))
	if q.Get("width") == "" || q.Get("height") == "" {
		return apierr.MissingParam("width and height are required")
	}
	if err1 != nil || err2 != nil {
		return apierr.InvalidParam("width and height must be integers")
	}
	method := q.Get("method")
	if method == "" {
		method = "scale"
	}
	if a := q.Get("animated"); a != "" && a != "true" && a != "false" {
		return apierr.InvalidParam("animated must be true or false")
	}
	d, err := wait(r)
	if err != nil {
		return err
	}
	content, err := m.media.Thumbnail(r.Context(), server, mediaID, width, height, method, d)
	if err != nil {
		return err
	}
	serve(w, r, content)
	return nil
}

// serve writes a media file with its security headers. http.ServeContent
// answers Range and conditional requests (seeking in audio and video); the
// Content-Type is set first, so it never sniffs.
func serve(w http.ResponseWriter, r *http.Request, c *media.Content) {
	defer c.File.Close()
	media.SetServeHeaders(w.Header(), c.ContentType, c.Filename)
	http.ServeContent(w, r, "", c.Modified, c.File)
}

func (m *mediaAPI) previewURL(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	q := r.URL.Query()
	var ts int64
	if v := q.Get("ts"); v != "" {
		var err error
		if ts, err = strconv.ParseInt(v, 10, 64); err != nil {
			return apierr.InvalidParam("ts must be an integer")
		}
	}
	og, err := m.media.Preview(r.Context(), c.UserID, q.Get("url"), ts)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, og)
	return nil
}
