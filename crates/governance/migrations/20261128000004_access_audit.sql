-- Access control (principals, roles, grants, column masks, row filters, API
-- tokens), the audit log, column classifications and erasure evidence.
-- JSON columns: principals.attributes, *.except_roles, audit_log.detail,
-- erasures.tables.

CREATE TABLE principals (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE role_members (
    role      TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (role, principal)
);

-- grantee: `user:<name>` or `role:<name>`; securable: `zone:<zone>`,
-- `table:<zone>/<dataset>` or `column:<zone>/<dataset>.<column>`.
CREATE TABLE grants (
    grantee    TEXT NOT NULL,
    privilege  TEXT NOT NULL,
    securable  TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (grantee, privilege, securable)
);

-- role '' means every principal.
CREATE TABLE column_masks (
    zone         TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    column_name  TEXT NOT NULL,
    role         TEXT NOT NULL,
    mask         TEXT NOT NULL,
    except_roles TEXT NOT NULL DEFAULT '[]',
    created_at   TEXT NOT NULL,
    PRIMARY KEY (zone, dataset, column_name, role)
);

CREATE TABLE row_filters (
    id           TEXT PRIMARY KEY,
    zone         TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    predicate    TEXT NOT NULL,
    role         TEXT NOT NULL,
    except_roles TEXT NOT NULL DEFAULT '[]',
    created_at   TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);

-- Append-only: the store has no statement that updates or deletes a row, and
-- triggers (created by the store per backend) reject any that tries.
CREATE TABLE audit_log (
    id        TEXT PRIMARY KEY,
    at        TEXT NOT NULL,
    principal TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT,
    allowed   BIGINT NOT NULL,
    rows      BIGINT,
    detail    TEXT NOT NULL
);

CREATE INDEX audit_log_by_time ON audit_log (at);

CREATE TABLE column_classifications (
    dataset     TEXT NOT NULL,
    column_name TEXT NOT NULL,
    tag         TEXT NOT NULL,
    confidence  DOUBLE PRECISION NOT NULL,
    source      TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (dataset, column_name)
);

CREATE TABLE erasures (
    id        TEXT PRIMARY KEY,
    at        TEXT NOT NULL,
    principal TEXT NOT NULL,
    predicate TEXT NOT NULL,
    tables    TEXT NOT NULL
);

INSERT INTO principals (name, kind, attributes, created_at)
VALUES ('admin', 'user', '{}', '1970-01-01T00:00:00.000000Z');
INSERT INTO roles (name, description, created_at)
VALUES ('admin', 'superuser: every privilege on everything', '1970-01-01T00:00:00.000000Z');
INSERT INTO role_members (role, principal) VALUES ('admin', 'admin');
