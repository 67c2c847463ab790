-- The index as it was before versioned migrations (schema_version 7);
-- IF NOT EXISTS lets an index from then upgrade in place.
CREATE TABLE IF NOT EXISTS tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	roles      TEXT NOT NULL,
	hash       TEXT NOT NULL UNIQUE,
	created_at TIMESTAMP NOT NULL,
	revoked_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS keys (
	name       TEXT PRIMARY KEY,
	key_id     TEXT NOT NULL,
	public_pem TEXT NOT NULL,
	state      TEXT NOT NULL,
	is_default INTEGER NOT NULL DEFAULT 0,
	not_before TIMESTAMP NOT NULL,
	not_after  TIMESTAMP,
	revoked_at TIMESTAMP,
	reason     TEXT NOT NULL DEFAULT '',
	updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
	id         TEXT PRIMARY KEY,
	at         TIMESTAMP NOT NULL,
	image      TEXT NOT NULL,
	digest     TEXT NOT NULL,
	policy     TEXT NOT NULL,
	revision   TEXT NOT NULL,
	mode       TEXT NOT NULL,
	allowed    INTEGER NOT NULL,
	would_deny INTEGER NOT NULL,
	breakglass TEXT NOT NULL DEFAULT '',
	caller     TEXT NOT NULL,
	detail     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_digest ON decisions (digest, at);
CREATE TABLE IF NOT EXISTS policies (
	name       TEXT PRIMARY KEY,
	document   BLOB NOT NULL,
	updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS sboms (
	digest       TEXT NOT NULL,
	format       TEXT NOT NULL,
	tool_version TEXT NOT NULL,
	job_id       INTEGER NOT NULL,
	result       TEXT NOT NULL,
	created_at   TIMESTAMP NOT NULL,
	PRIMARY KEY (digest, format, tool_version)
);
