-- The cluster view grows (decision 0018): whether a server group is in its load balancers'
-- rotation and which load balancers it serves behind; load balancers and security groups as
-- their streams last recorded them (`loadbalancer-…`, `securitygroup-…`). Disposable like every
-- read model: rebuilt from the log.
ALTER TABLE server_groups
    ADD COLUMN disabled boolean NOT NULL DEFAULT false,
    ADD COLUMN load_balancers jsonb NOT NULL DEFAULT '[]';

CREATE TABLE cloud_resources (
    stream_id   text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('loadBalancer', 'securityGroup')),
    account     text NOT NULL,
    region      text NOT NULL,
    name        text NOT NULL,
    document    jsonb NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX cloud_resources_by_kind ON cloud_resources (kind, account, name) WHERE NOT deleted;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'topsail_runtime') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON cloud_resources TO topsail_runtime;
    END IF;
END
$$;
