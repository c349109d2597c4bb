-- The cluster view (decision 0017): every server group as its stream last recorded it
-- (`servergroup-<account>.<region>.<name>`). Disposable like every read model: rebuilt from the log.
CREATE TABLE server_groups (
    stream_id     text PRIMARY KEY,
    account       text NOT NULL,
    region        text NOT NULL,
    name          text NOT NULL,
    application   text NOT NULL,
    cluster       text NOT NULL,
    image         text,
    capacity      jsonb,
    instances     jsonb NOT NULL DEFAULT '[]',
    destroyed     boolean NOT NULL DEFAULT false,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE INDEX server_groups_by_application ON server_groups (application, account, cluster) WHERE NOT destroyed;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'topsail_runtime') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON server_groups TO topsail_runtime;
    END IF;
END
$$;
