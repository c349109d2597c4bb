-- The append-only event log. Everything else Topsail stores can be rebuilt from this table.
CREATE TABLE events (
    -- Global position: unique, drawn from a sequence when the row is inserted.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction (pg_current_xact_id, 64-bit, never wraps). Readers order the log
    -- by (transaction_id, position) and read only below the oldest open transaction; see
    -- docs/decisions/0001-gap-free-log-order.md.
    transaction_id  bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id        uuid NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL CHECK (stream_version > 0),
    event_type      text NOT NULL,
    schema_version  integer NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    payload         jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    CONSTRAINT events_event_id_unique UNIQUE (event_id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_log_order ON events (transaction_id, position);

-- Appends events to one stream in one statement (one round trip, one transaction when called
-- outside an explicit one).
--   p_expected: NULL = any version, 0 = the stream must not exist, n = the stream must be at n.
-- Returns one row per event: its global position and its stream version.
-- Raises SQLSTATE TS409 (detail: the stream's current version) on a version conflict, and
-- unique_violation on events_event_id_unique when an event id is stored already; the caller then
-- looks the ids up to answer an idempotent retry (the common path pays for no extra lookup).
CREATE FUNCTION append_events(
    p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_schema_versions integer[],
    p_payloads text[], p_metadata text[]
) RETURNS TABLE (out_position bigint, out_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
BEGIN
    -- One appender per stream at a time. The lock is taken before this transaction writes, so
    -- its transaction id is assigned after every earlier appender of the stream committed:
    -- (transaction_id, position) order then keeps each stream in version order.
    PERFORM pg_advisory_xact_lock(1953721089, hashtext(p_stream));

    SELECT coalesce(max(e.stream_version), 0) INTO v_current FROM events e WHERE e.stream_id = p_stream;
    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RAISE EXCEPTION USING ERRCODE = 'TS409', MESSAGE = 'version conflict', DETAIL = v_current::text;
    END IF;

    RETURN QUERY
    INSERT INTO events AS e (event_id, stream_id, stream_version, event_type, schema_version, payload, metadata)
    SELECT t.id, p_stream, v_current + t.ord, t.typ, t.sv, t.pl::jsonb, t.md::jsonb
      FROM unnest(p_ids, p_types, p_schema_versions, p_payloads, p_metadata)
           WITH ORDINALITY AS t(id, typ, sv, pl, md, ord)
     ORDER BY t.ord
    RETURNING e.position, e.stream_version;
END
$$;
