-- Log order that survives a restore into another PostgreSQL cluster (decision 0010).
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

-- As in 0007, with the log's transaction id taken once per append rather than once per row, and
-- each payload parsed once for both the hash and the row.
CREATE OR REPLACE FUNCTION append_events(
    p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_schema_versions integer[],
    p_payloads text[], p_metadata text[]
) RETURNS TABLE (out_position bigint, out_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_previous bytea;
    v_now timestamptz := now();
    v_transaction bigint;
    v_payloads jsonb[] := p_payloads::jsonb[];
    v_metadata jsonb[] := p_metadata::jsonb[];
    v_hashes bytea[] := '{}';
    i integer;
BEGIN
    -- One appender per stream at a time. The lock is taken before this transaction writes, so
    -- its transaction id is assigned after every earlier appender of the stream committed:
    -- (transaction_id, position) order then keeps each stream in version order.
    PERFORM pg_advisory_xact_lock(1953721089, hashtext(p_stream));

    SELECT e.stream_version, e.hash INTO v_current, v_previous
      FROM events e WHERE e.stream_id = p_stream ORDER BY e.stream_version DESC LIMIT 1;
    v_current := coalesce(v_current, 0);
    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RAISE EXCEPTION USING ERRCODE = 'TS409', MESSAGE = 'version conflict', DETAIL = v_current::text;
    END IF;
    v_transaction := log_transaction_id();

    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        v_previous := event_hash(v_previous, p_ids[i], p_stream, v_current + i, p_types[i], p_schema_versions[i], v_now,
                                 v_payloads[i], v_metadata[i]);
        v_hashes[i] := v_previous;
    END LOOP;

    RETURN QUERY
    INSERT INTO events AS e (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, recorded_at, payload, metadata, hash)
    SELECT v_transaction, t.id, p_stream, v_current + t.ord, t.typ, t.sv, v_now, t.pl, t.md, t.h
      FROM unnest(p_ids, p_types, p_schema_versions, v_payloads, v_metadata, v_hashes)
           WITH ORDINALITY AS t(id, typ, sv, pl, md, h, ord)
     ORDER BY t.ord
    RETURNING e.position, e.stream_version;
END
$$;

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

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'topsail_runtime') THEN
        GRANT SELECT, UPDATE ON log_epoch TO topsail_runtime;
    END IF;
END
$$;
