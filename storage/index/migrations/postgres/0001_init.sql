-- The index's first schema, as on SQLite.
CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	roles      TEXT NOT NULL,
	hash       TEXT NOT NULL UNIQUE,
	created_at TIMESTAMPTZ NOT NULL,
	revoked_at TIMESTAMPTZ
);
CREATE TABLE keys (
	name       TEXT PRIMARY KEY,
	key_id     TEXT NOT NULL,
	public_pem TEXT NOT NULL,
	state      TEXT NOT NULL,
	is_default BOOLEAN NOT NULL DEFAULT FALSE,
	not_before TIMESTAMPTZ NOT NULL,
	not_after  TIMESTAMPTZ,
	revoked_at TIMESTAMPTZ,
	reason     TEXT NOT NULL DEFAULT '',
	updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE revisions (
	name  TEXT PRIMARY KEY,
	value BIGINT NOT NULL
);
CREATE TABLE decisions (
	id         TEXT PRIMARY KEY,
	at         TIMESTAMPTZ NOT NULL,
	image      TEXT NOT NULL,
	digest     TEXT NOT NULL,
	policy     TEXT NOT NULL,
	revision   TEXT NOT NULL,
	mode       TEXT NOT NULL,
	allowed    BOOLEAN NOT NULL,
	would_deny BOOLEAN NOT NULL,
	breakglass TEXT NOT NULL DEFAULT '',
	caller     TEXT NOT NULL,
	detail     TEXT NOT NULL
);
CREATE INDEX decisions_digest ON decisions (digest, at);
CREATE TABLE policies (
	name       TEXT PRIMARY KEY,
	document   BYTEA NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE sboms (
	digest       TEXT NOT NULL,
	format       TEXT NOT NULL,
	tool_version TEXT NOT NULL,
	job_id       BIGINT NOT NULL,
	result       TEXT NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (digest, format, tool_version)
);
