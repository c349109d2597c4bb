-- Which engine process reads which Kafka partition, and from where (decision 0011).
--
-- Each role's consumers hold partitions by leases in PostgreSQL, as the relay holds its
-- leadership, instead of joining a Kafka consumer group: a group coordinator that wedged (as the
-- development broker's did after repeated kill -9) can no longer stop the engine, and the
-- consumed offsets live beside the log, fenced by the lease. Offsets are also committed to Kafka
-- in the background so that Kafka's tools show the lag.
CREATE TABLE consumer_members (
    group_name  text NOT NULL,
    member      uuid NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (group_name, member)
);

CREATE TABLE partition_leases (
    group_name  text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    -- The member reading the partition, until its lease expires; NULL when free.
    owner       uuid,
    expires_at  timestamptz,
    -- The next offset to handle: everything before it was handled.
    next_offset bigint,
    PRIMARY KEY (group_name, topic, partition)
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'topsail_runtime') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON consumer_members, partition_leases TO topsail_runtime;
    END IF;
END
$$;
