-- Applications as the projector sees them: the latest version of each `application-<name>`
-- stream. Disposable like every read model.
CREATE TABLE applications (
    name          text PRIMARY KEY,
    version       bigint NOT NULL,
    deleted       boolean NOT NULL DEFAULT false,
    config        jsonb,
    updated_at    timestamptz NOT NULL,
    updated_by    text
);
