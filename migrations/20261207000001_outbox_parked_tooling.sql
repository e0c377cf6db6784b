-- Tooling for the outbox relay's parked rows, and a dead-letter copy that follows from the parking.

-- What kind of failure parked the row (`encode`, `too_large`, `behind_parked`); `reason` keeps the
-- error text. NULL for rows parked before this column existed.
ALTER TABLE outbox_parked ADD COLUMN kind text;

-- The dead-letter copies still to send: one row per parking, inserted by the same statement that
-- parks, and deleted by the relay only after Kafka acknowledged the copy. A copy is therefore never
-- lost (a failed send is retried until confirmed), and a release or discard of the parked row does
-- not cancel it: every parking has its dead-letter record.
CREATE TABLE outbox_dlt (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The outbox row id of the parked row (outbox_parked.id).
    parked_id       bigint      NOT NULL,
    shard_key       integer     NOT NULL,
    event_position  bigint      NOT NULL REFERENCES events (position),
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL,
    kind            text        NOT NULL,
    reason          text        NOT NULL,
    parked_at       timestamptz NOT NULL
);

GRANT SELECT, INSERT, DELETE ON outbox_dlt TO eventfold_relay;
GRANT USAGE ON SEQUENCE outbox_dlt_id_seq TO eventfold_relay;
