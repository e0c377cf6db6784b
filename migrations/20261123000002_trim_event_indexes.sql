-- Fewer indexes on the append path: every event pays for each one at insert time.
-- * The global feed pages through events_tx_position and filters types on the way.
-- * An aggregate's state as of a time finds its rows through events_aggregate_version and filters
--   recorded_at there (one aggregate has few rows).
DROP INDEX IF EXISTS events_type_position;
DROP INDEX IF EXISTS events_aggregate_recorded;
