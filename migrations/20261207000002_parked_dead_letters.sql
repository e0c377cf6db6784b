-- The projector's dead-letter copies still to send: one row per parked event, inserted by the same
-- statement that parks it, deleted only after Kafka acknowledged the copy. A failed send is retried
-- until confirmed, and a replay or discard of the parked event does not cancel its copy, so the
-- dead-letter topic always holds one record per parking.
CREATE TABLE parked_dead_letters (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- parked_events.id (kept after the parked row is released or discarded).
    parked_id       bigint      NOT NULL,
    read_model      text        NOT NULL,
    record_key      bytea,
    record_value    bytea,
    header_names    text[]      NOT NULL,
    header_values   bytea[]     NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX parked_dead_letters_read_model ON parked_dead_letters (read_model, id);

GRANT SELECT, INSERT, DELETE ON parked_dead_letters TO eventfold_projector;
