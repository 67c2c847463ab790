-- The auditor's view: artifacts (every repository and digest the record
-- names, but for gate decisions), the provenance facts and SBOM packages
-- indexed against them, and decisions ordered by time.
CREATE TABLE artifacts (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	repository TEXT NOT NULL,
	digest     TEXT NOT NULL,
	first_at   TIMESTAMP NOT NULL,
	UNIQUE (repository, digest)
);
CREATE INDEX artifacts_digest ON artifacts (digest);

INSERT INTO artifacts (repository, digest, first_at)
	SELECT repository, digest, MIN(at) FROM events
	WHERE digest <> '' AND repository <> '' AND kind <> 'decision.made'
	GROUP BY repository, digest ORDER BY MIN(seq);

CREATE TABLE provenance (
	artifact_id INTEGER NOT NULL,
	source_repo TEXT NOT NULL,
	commit_sha  TEXT NOT NULL,
	builder     TEXT NOT NULL,
	build_type  TEXT NOT NULL,
	PRIMARY KEY (artifact_id, source_repo, commit_sha, builder, build_type)
);
CREATE INDEX provenance_source ON provenance (source_repo, commit_sha);
CREATE INDEX provenance_commit ON provenance (commit_sha);

-- One row per package (purl, or name and version without one) and licenses.
CREATE TABLE packages (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	purl      TEXT NOT NULL,
	type      TEXT NOT NULL,
	namespace TEXT NOT NULL,
	name      TEXT NOT NULL,
	version   TEXT NOT NULL,
	licenses  TEXT NOT NULL,
	UNIQUE (purl, name, version, licenses)
);
CREATE INDEX packages_name ON packages (name, type, namespace);

-- Each SBOM document indexed, once per artifact.
CREATE TABLE sbom_docs (
	artifact_id    INTEGER NOT NULL,
	doc_digest     TEXT NOT NULL,
	format         TEXT NOT NULL,
	predicate_type TEXT NOT NULL,
	packages       INTEGER NOT NULL,
	event_id       TEXT NOT NULL,
	recorded_at    TIMESTAMP NOT NULL,
	PRIMARY KEY (artifact_id, doc_digest)
);

-- Which artifacts hold a package, in artifact order per package.
CREATE TABLE artifact_packages (
	package_id  INTEGER NOT NULL,
	artifact_id INTEGER NOT NULL,
	PRIMARY KEY (package_id, artifact_id)
) WITHOUT ROWID;

-- Which artifacts hold a package under a license (lower case), with those
-- packages' ids (delta varints).
CREATE TABLE artifact_licenses (
	license     TEXT NOT NULL,
	artifact_id INTEGER NOT NULL,
	package_ids BLOB NOT NULL,
	PRIMARY KEY (license, artifact_id)
) WITHOUT ROWID;

CREATE INDEX decisions_at ON decisions (at, id);
