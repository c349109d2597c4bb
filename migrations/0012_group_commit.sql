-- Group commit (decision 0012): appends that arrive while earlier ones are committing are
-- written together, in one statement and one commit, as EventStoreDB does. Each append keeps its
-- own expected-version check: one that conflicts writes nothing and is reported in its row; the
-- others are written. An expected version of -1 is "any version". An event id stored already
-- (a retry) fails the whole statement; the caller then appends that batch's appends one by one
-- (append_events), which tells a retry from a reused id.
--
-- The appends' streams are locked first, all of them, in one order (the lock keys sorted), and
-- before the transaction writes anything: so no two batches wait for each other, and the
-- transaction id, assigned at the first write, still comes after every earlier appender of each
-- stream committed — (transaction_id, position) keeps every stream in version order (0008).
-- Holding the locks, each check stays true until the commit, so no append needs a
-- subtransaction of its own (they would double the cost of an append). The streams' last events
-- are read in one statement and every event is inserted by one statement; only the hash chain
-- is worked out event by event.
CREATE FUNCTION append_batch(
    p_streams text[], p_expected bigint[], p_counts integer[],
    p_ids uuid[], p_types text[], p_schema_versions integer[], p_payloads text[], p_metadata text[]
) RETURNS TABLE (out_append integer, out_position bigint, out_version bigint, out_error text, out_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    v_key integer;
    v_appends integer := coalesce(array_length(p_streams, 1), 0);
    v_first integer := 1;
    v_current bigint;
    v_previous bytea;
    v_now timestamptz := now();
    v_payloads jsonb[] := p_payloads::jsonb[];
    v_metadata jsonb[] := p_metadata::jsonb[];
    v_last_versions jsonb := '{}';
    v_last_hashes jsonb := '{}';
    -- Per event: its append, stream, version and hash; whether it is written.
    v_event_append integer[] := '{}';
    v_event_stream text[] := '{}';
    v_event_version bigint[] := '{}';
    v_event_hash bytea[] := '{}';
    v_written integer[] := '{}';
    r record;
BEGIN
    FOR v_key IN SELECT DISTINCT hashtext(s) FROM unnest(p_streams) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1953721089, v_key);
    END LOOP;
    -- Each stream's last version and hash, read once for the whole batch.
    FOR r IN SELECT s.stream_id, l.stream_version, l.hash
               FROM (SELECT DISTINCT unnest(p_streams) AS stream_id) s
               CROSS JOIN LATERAL (SELECT e.stream_version, e.hash FROM events e WHERE e.stream_id = s.stream_id
                                    ORDER BY e.stream_version DESC LIMIT 1) l LOOP
        v_last_versions := v_last_versions || jsonb_build_object(r.stream_id, r.stream_version);
        v_last_hashes := v_last_hashes || jsonb_build_object(r.stream_id, encode(r.hash, 'hex'));
    END LOOP;
    FOR a IN 1 .. v_appends LOOP
        v_current := coalesce((v_last_versions ->> p_streams[a])::bigint, 0);
        IF p_expected[a] <> -1 AND p_expected[a] <> v_current THEN
            out_append := a; out_position := NULL; out_version := NULL; out_error := 'conflict'; out_detail := v_current::text;
            RETURN NEXT;
        ELSE
            v_previous := decode(v_last_hashes ->> p_streams[a], 'hex');
            FOR i IN v_first .. v_first + p_counts[a] - 1 LOOP
                v_current := v_current + 1;
                v_previous := event_hash(v_previous, p_ids[i], p_streams[a], v_current, p_types[i], p_schema_versions[i], v_now,
                                         v_payloads[i], v_metadata[i]);
                v_written := v_written || i;
                v_event_append := v_event_append || a;
                v_event_stream := v_event_stream || p_streams[a];
                v_event_version := v_event_version || v_current;
                v_event_hash := v_event_hash || v_previous;
            END LOOP;
            v_last_versions := v_last_versions || jsonb_build_object(p_streams[a], v_current);
            v_last_hashes := v_last_hashes || jsonb_build_object(p_streams[a], encode(v_previous, 'hex'));
        END IF;
        v_first := v_first + p_counts[a];
    END LOOP;
    IF array_length(v_written, 1) IS NULL THEN
        RETURN;
    END IF;
    -- The transaction id is assigned here, at the first write, after every lock was taken.
    RETURN QUERY
    WITH written AS (
        INSERT INTO events AS e (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, recorded_at, payload, metadata, hash)
        SELECT log_transaction_id(), p_ids[t.i], t.stream, t.version, p_types[t.i], p_schema_versions[t.i], v_now, v_payloads[t.i], v_metadata[t.i], t.hash
          FROM unnest(v_written, v_event_stream, v_event_version, v_event_hash) WITH ORDINALITY AS t(i, stream, version, hash, ord)
         ORDER BY t.ord
        RETURNING e.stream_id, e.stream_version, e.position
    )
    SELECT t.a, w.position, w.stream_version, NULL::text, NULL::text
      FROM written w JOIN unnest(v_event_append, v_event_stream, v_event_version) AS t(a, stream, version)
        ON t.stream = w.stream_id AND t.version = w.stream_version
     ORDER BY w.position;
END
$$;
