-- Media repository (see media/README.md).
-- PostgreSQL DDL: plain tables keyed by their primary keys.
-- Column names and meanings match the other engine's file exactly.

-- One row per media ID. The bytes live in <data_dir>/media under their
-- SHA-256 (sha256 column), never under the media ID. A row created by
-- /media/v1/create and not yet uploaded to is pending: sha256 = '' and
-- expires_ts set (0 once uploaded).
CREATE TABLE media (
    server       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    uploader     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    filename     TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    expires_ts   BIGINT NOT NULL,
    PRIMARY KEY (server, media_id)
);
CREATE INDEX media_sha256 ON media (sha256);
CREATE INDEX media_pending ON media (uploader, expires_ts) WHERE sha256 = '';

-- Generated thumbnails, cached: one per media, size and method; the bytes
-- are content-addressed files like the originals.
CREATE TABLE media_thumbnails (
    server       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (server, media_id, width, height, method)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- Bytes each local user has uploaded (originals only), for the quota;
-- updated in the same transaction as the media row.
CREATE TABLE media_usage (
    user_id TEXT PRIMARY KEY,
    bytes   BIGINT NOT NULL
);
