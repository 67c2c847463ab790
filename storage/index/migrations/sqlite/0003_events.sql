-- The evidence record: every state change as an event, the evidence rows it
-- wrote (rebuildable from the registry), and where decisions were reused.
CREATE TABLE events (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT,
	id             TEXT NOT NULL UNIQUE,
	kind           TEXT NOT NULL,
	at             TIMESTAMP NOT NULL,
	repository     TEXT NOT NULL DEFAULT '',
	digest         TEXT NOT NULL DEFAULT '',
	tags           TEXT NOT NULL DEFAULT '[]',
	actor_id       TEXT NOT NULL DEFAULT '',
	actor_name     TEXT NOT NULL DEFAULT '',
	actor_kind     TEXT NOT NULL DEFAULT '',
	key_id         TEXT NOT NULL DEFAULT '',
	key_name       TEXT NOT NULL DEFAULT '',
	key_version    TEXT NOT NULL DEFAULT '',
	predicate_type TEXT NOT NULL DEFAULT '',
	request_id     TEXT NOT NULL DEFAULT '',
	locations      TEXT NOT NULL DEFAULT '[]',
	detail         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_digest ON events (digest, seq);
CREATE INDEX events_kind ON events (kind, seq);
CREATE INDEX events_actor ON events (actor_name, seq);
CREATE INDEX events_at ON events (at, seq);

CREATE TABLE evidence (
	repository     TEXT NOT NULL,
	digest         TEXT NOT NULL,
	format         TEXT NOT NULL,
	content        TEXT NOT NULL,
	kind           TEXT NOT NULL,
	ref            TEXT NOT NULL,
	key_id         TEXT NOT NULL DEFAULT '',
	predicate_type TEXT NOT NULL DEFAULT '',
	origin         TEXT NOT NULL DEFAULT '',
	signed_at      TIMESTAMP,
	event_id       TEXT NOT NULL DEFAULT '',
	recorded_at    TIMESTAMP NOT NULL,
	PRIMARY KEY (repository, digest, format, content)
);
CREATE INDEX evidence_digest ON evidence (digest);

ALTER TABLE decisions ADD COLUMN repository TEXT NOT NULL DEFAULT '';
ALTER TABLE decisions ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
ALTER TABLE decisions ADD COLUMN workload_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE decisions ADD COLUMN workload_name TEXT NOT NULL DEFAULT '';
ALTER TABLE decisions ADD COLUMN request_id TEXT NOT NULL DEFAULT '';

CREATE TABLE decision_reuse (
	decision_id   TEXT NOT NULL,
	namespace     TEXT NOT NULL DEFAULT '',
	workload_kind TEXT NOT NULL DEFAULT '',
	workload_name TEXT NOT NULL DEFAULT '',
	count         INTEGER NOT NULL,
	first_at      TIMESTAMP NOT NULL,
	last_at       TIMESTAMP NOT NULL,
	PRIMARY KEY (decision_id, namespace, workload_kind, workload_name)
);
