-- Log order that survives a restore into another PostgreSQL cluster (decision 0010). The
-- runtime role's rights on log_epoch are granted with the others in migration 0008.
--
-- Readers order the log by (transaction_id, position) and read below the oldest open writer
-- (decision 0001). A dump restored into another cluster (or a logical-replication migration)
-- keeps the stored transaction ids, but the new cluster's transaction counter may be far lower:
-- new events would then sort before everything restored, and every reader whose checkpoint is in
-- the restored part would never see them. So the ids the log uses are the server's plus an
-- offset kept in the database itself; `topsail migrate` and every Topsail process check at start
-- that new ids sort after every stored one, and raise the offset when they would not. Readers
-- add the same offset to the horizon, so nothing else changes for them.
CREATE TABLE log_epoch (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid_offset  bigint NOT NULL DEFAULT 0,
    realigned_at timestamptz
);
INSERT INTO log_epoch DEFAULT VALUES;

-- The id an appending transaction writes into events.transaction_id.
CREATE FUNCTION log_transaction_id() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pg_current_xact_id()::text::bigint + (SELECT xid_offset FROM log_epoch)
$$;

-- Below it, every transaction has ended: the gap-free readers' limit, in the log's id space.
CREATE FUNCTION log_horizon() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + (SELECT xid_offset FROM log_epoch)
$$;

ALTER TABLE events ALTER COLUMN transaction_id SET DEFAULT log_transaction_id();

-- Makes new transaction ids sort after every stored one; returns the offset added (0 when none
-- was needed). The stored maximum is read first, the transaction id after: any transaction that
-- committed before the read got its id before this one, so a normal log never looks restored.
CREATE FUNCTION realign_log_epoch(p_stored_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_next bigint := log_transaction_id();
    v_gap bigint;
BEGIN
    IF p_stored_max IS NULL OR p_stored_max < v_next THEN
        RETURN 0;
    END IF;
    v_gap := p_stored_max - v_next + 1;
    UPDATE log_epoch SET xid_offset = xid_offset + v_gap, realigned_at = now();
    RETURN v_gap;
END
$$;
