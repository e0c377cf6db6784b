-- Every finished replay and rebuild of a read model or process manager (`eventfold replay`,
-- `eventfold rebuild`, the projector's admin API), so that `GET /v1/health` can show how long
-- they take.
CREATE TABLE replay_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    read_model   text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('replay', 'rebuild')),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    seconds      double precision NOT NULL,
    events       bigint NOT NULL,
    complete     boolean NOT NULL
);
CREATE INDEX replay_runs_recent ON replay_runs (finished_at DESC);
GRANT SELECT, INSERT ON replay_runs TO eventfold_projector;
GRANT SELECT ON replay_runs TO eventfold_writer;
