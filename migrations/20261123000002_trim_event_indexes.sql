-- Less work on the append path: every event pays for each index and check at insert time.
-- * The global feed pages through events_tx_position and filters types on the way.
-- * An aggregate's state as of a time finds its rows through events_aggregate_version and filters
--   recorded_at there (one aggregate has few rows).
-- * The outbox row's foreign key ran a lookup and took a KEY SHARE lock on (that is, wrote) the
--   event row it points to, for each event. Outbox rows are only written by the same statement as
--   their events, and events are never deleted, so the reference cannot dangle.
DROP INDEX IF EXISTS events_type_position;
DROP INDEX IF EXISTS events_aggregate_recorded;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_position_fkey;
-- Snapshots are written and read whole, never queried inside: JSON text skips the jsonb parse on
-- write and the jsonb rendering on every read.
ALTER TABLE snapshots ALTER COLUMN state TYPE text USING state::text;
-- The same for a command's recorded answer, read back only when the command id is repeated.
ALTER TABLE commands ALTER COLUMN response TYPE text USING response::text;
