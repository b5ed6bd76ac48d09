-- The catalog: datasets, pinned schema versions and ingestion runs.
-- Portable SQL: the same migration runs on SQLite and PostgreSQL.
-- Timestamps are RFC 3339 UTC strings with microseconds, so they sort as text.

CREATE TABLE datasets (
    name        TEXT NOT NULL,
    zone        TEXT NOT NULL,
    location    TEXT NOT NULL,
    owner       TEXT,
    description TEXT,
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (name, zone)
);

CREATE TABLE schema_versions (
    dataset     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    schema_avsc TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (dataset, version)
);

CREATE TABLE ingestion_runs (
    id               TEXT PRIMARY KEY,
    dataset          TEXT NOT NULL,
    source           TEXT NOT NULL,
    status           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    rows_read        BIGINT NOT NULL DEFAULT 0,
    rows_written     BIGINT NOT NULL DEFAULT 0,
    rows_quarantined BIGINT NOT NULL DEFAULT 0,
    bytes_read       BIGINT NOT NULL DEFAULT 0,
    delta_version    BIGINT,
    error            TEXT
);

CREATE INDEX ingestion_runs_by_dataset ON ingestion_runs (dataset, started_at);
