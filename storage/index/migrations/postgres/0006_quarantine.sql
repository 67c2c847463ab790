-- Quarantines: a digest or a key blocked everywhere until lifted. Rows are
-- never deleted: a lift keeps who lifted it, when and why.
CREATE TABLE quarantines (
	id          TEXT PRIMARY KEY,
	kind        TEXT NOT NULL,
	subject     TEXT NOT NULL,
	key_name    TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL,
	actor       TEXT NOT NULL,
	created_at  TIMESTAMPTZ NOT NULL,
	lifted_at   TIMESTAMPTZ,
	lifted_by   TEXT NOT NULL DEFAULT '',
	lift_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX quarantines_subject ON quarantines (kind, subject);
CREATE INDEX quarantines_created ON quarantines (created_at, id);

-- The latest re-validation of each admitted repository, digest and
-- namespace against today's policies, keys and quarantines.
CREATE TABLE revalidations (
	repository TEXT NOT NULL,
	digest     TEXT NOT NULL,
	namespace  TEXT NOT NULL,
	compliant  BOOLEAN NOT NULL,
	reason     TEXT NOT NULL,
	checked_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (repository, digest, namespace)
);
CREATE INDEX revalidations_compliant ON revalidations (compliant, namespace);
CREATE INDEX decisions_admitted ON decisions (at, allowed, namespace);
