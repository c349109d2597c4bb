-- The executions read model: one row per execution and per stage, maintained by the projector
-- role from the log. Disposable: `topsail projections rebuild` empties it and replays the log.
CREATE TABLE execution_summaries (
    execution_id    text PRIMARY KEY,
    application     text,
    pipeline_name   text,
    pipeline_id     text,
    status          text NOT NULL,
    trigger_type    text,
    -- Who or what triggered the run (the trigger's user, or the event's actor).
    triggered_by    text,
    triggered_at    timestamptz NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    -- When the last event of the execution was recorded: what the supervisor watches.
    updated_at      timestamptz NOT NULL,
    stream_version  bigint NOT NULL
);

CREATE INDEX execution_summaries_by_pipeline ON execution_summaries (application, pipeline_name, triggered_at DESC);
CREATE INDEX execution_summaries_by_status ON execution_summaries (status, triggered_at DESC);
CREATE INDEX execution_summaries_by_time ON execution_summaries (triggered_at DESC, execution_id);

CREATE TABLE stage_summaries (
    execution_id    text NOT NULL REFERENCES execution_summaries (execution_id) ON DELETE CASCADE,
    ref_id          text NOT NULL,
    -- The stage's place in the pipeline's order (upstream before downstream).
    stage_order     integer NOT NULL,
    name            text,
    type            text,
    status          text NOT NULL,
    attempt         integer NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    PRIMARY KEY (execution_id, ref_id)
);

-- Where each projection got to in the log; moved in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    projection      text PRIMARY KEY,
    transaction_id  bigint NOT NULL,
    position        bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
