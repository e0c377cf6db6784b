-- The outbox relay's own state: shard ownership with fencing epochs, parked
-- outbox rows, and a wake-up notification for every statement that adds outbox rows.

-- One row per shard ever owned. A relay that takes a shard's advisory lock bumps the epoch; its
-- deletes only succeed while the epoch is still its own, so a relay that lost the lock (paused
-- past its session timeout, cut off) cannot delete rows the new owner is publishing.
CREATE TABLE relay_shards (
    shard           integer     PRIMARY KEY CHECK (shard >= 0),
    epoch           bigint      NOT NULL,
    owner           text        NOT NULL,
    acquired_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Outbox rows the relay could not publish (e.g. a payload its schema cannot encode), and every later
-- row of the same aggregate, held back behind it so that the aggregate's order is kept.
CREATE TABLE outbox_parked (
    id              bigint      PRIMARY KEY,
    tx_id           xid8        NOT NULL,
    shard_key       integer     NOT NULL,
    event_position  bigint      NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason          text        NOT NULL,
    -- The parked row this one waits behind; NULL for the row that failed itself.
    blocked_by      bigint
);
CREATE INDEX outbox_parked_aggregate ON outbox_parked (aggregate_type, aggregate_id, version);

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventfold_outbox', '');
    RETURN NULL;
END
$$;
-- Once per statement (a group commit is one statement), delivered at commit.
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

GRANT SELECT, INSERT, UPDATE ON relay_shards TO eventfold_relay;
GRANT SELECT, INSERT, DELETE ON outbox_parked TO eventfold_relay;
GRANT INSERT ON outbox TO eventfold_relay;
