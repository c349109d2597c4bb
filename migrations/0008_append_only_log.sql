-- A log that cannot be rewritten (decision 0010).
--
-- 1. Tamper evidence: every event stores `hash`, SHA-256 over its content and the hash of the
--    previous event of its stream, so changing, removing or reordering an event breaks the chain
--    at that event (`topsail events verify` finds the first broken link). Appends to a stream are
--    serialized by append_events's advisory lock, so the previous hash is always the stored one.
-- 2. The database refuses UPDATE, DELETE and TRUNCATE on events, whoever asks (a trigger), so
--    not even the migration owner changes history by accident.
-- 3. The role Topsail runs as needs only SELECT and INSERT on events: `topsail_runtime` (a group
--    role; the login role the engine uses is made a member of it — see ops/services) gets exactly
--    that, and what it needs on the disposable tables.

-- The content an event's hash covers, in one canonical text form: jsonb prints canonically, and
-- the time as seconds since the epoch does not depend on the session's time zone.
CREATE FUNCTION event_hash(
    p_previous bytea, p_id uuid, p_stream text, p_version bigint, p_type text, p_schema_version integer,
    p_recorded_at timestamptz, p_payload jsonb, p_metadata jsonb
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(coalesce(p_previous, '\x'::bytea) || convert_to(concat_ws(chr(31),
        p_id::text, p_stream, p_version::text, p_type, p_schema_version::text,
        extract(epoch FROM p_recorded_at)::text, p_payload::text, p_metadata::text), 'UTF8'))
$$;

ALTER TABLE events ADD COLUMN hash bytea;

-- Chains for the events already stored, each stream in version order.
DO $$
DECLARE
    r record;
    v_stream text;
    v_previous bytea;
BEGIN
    FOR r IN SELECT position, event_id, stream_id, stream_version, event_type, schema_version, recorded_at, payload, metadata
               FROM events ORDER BY stream_id, stream_version LOOP
        IF v_stream IS DISTINCT FROM r.stream_id THEN
            v_stream := r.stream_id;
            v_previous := NULL;
        END IF;
        v_previous := event_hash(v_previous, r.event_id, r.stream_id, r.stream_version, r.event_type, r.schema_version,
                                 r.recorded_at, r.payload, r.metadata);
        UPDATE events SET hash = v_previous WHERE position = r.position;
    END LOOP;
END
$$;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

-- As in 0001, and each event's hash chained to its stream's last; the log's transaction id
-- (migration 0007) is taken once per append, and each payload parsed once for the hash and the row.
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

CREATE FUNCTION events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TS405', MESSAGE = format('the event log is append-only: %s on events is refused', TG_OP),
        HINT = 'events are never changed or removed; append an event that corrects them';
END
$$;

CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- The runtime role. Roles belong to the whole cluster: made here when missing (concurrent
-- migrations of several schemas may race to make it), or made beforehand by a DBA when the
-- migration owner may not create roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'topsail_runtime') THEN
        CREATE ROLE topsail_runtime NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'role topsail_runtime is missing and this migration may not create it; a DBA creates it (CREATE ROLE topsail_runtime NOLOGIN) and grants are applied by migrating again';
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'topsail_runtime') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO topsail_runtime', current_schema());
        GRANT SELECT, INSERT ON events TO topsail_runtime;
        GRANT SELECT, INSERT, UPDATE, DELETE ON relay_checkpoints, timers, projection_checkpoints TO topsail_runtime;
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON execution_summaries, stage_summaries, pipeline_configs, applications
            TO topsail_runtime;
        GRANT SELECT ON topsail_migrations TO topsail_runtime;
        GRANT SELECT, UPDATE ON log_epoch TO topsail_runtime;
    END IF;
END
$$;
