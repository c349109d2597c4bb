-- Saved pipeline configurations as the projector sees them: the latest version of each
-- `pipeline-<id>` stream, for listings by application. Disposable like every read model.
CREATE TABLE pipeline_configs (
    pipeline_id   text PRIMARY KEY,
    application   text,
    name          text,
    version       bigint NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    deleted       boolean NOT NULL DEFAULT false,
    config        jsonb,
    updated_at    timestamptz NOT NULL,
    updated_by    text
);

CREATE INDEX pipeline_configs_by_application ON pipeline_configs (application, name) WHERE NOT deleted;
