-- The audit log: each event's index in the tessera log, NULL until it is
-- sequenced there. Events committed to the index but not yet in the log
-- (the log was down, or attestd stopped between the two) are found by the
-- partial index and appended later.
ALTER TABLE events ADD COLUMN log_index BIGINT;
CREATE UNIQUE INDEX events_log_index ON events (log_index);
CREATE INDEX events_unlogged ON events (seq) WHERE log_index IS NULL;
