-- Indexes for the lookups that filter events by type or by data rather than by stream or log
-- order (decision 0010; plans and timings on a log of a million events in docs/benchmarks.md,
-- `topsail bench lookups`). Each index costs every append a little: only lookups that users wait
-- for get one.

-- A saved pipeline by application and name (triggers by name, Gate's pipelineConfigs/{name}).
CREATE INDEX events_pipeline_by_name ON events ((payload->'pipeline'->>'application'), (payload->'pipeline'->>'name'), position)
    WHERE event_type = 'pipeline.saved';

-- Events of a type, in log order: token listings, the audit log's type filter (prefixes too:
-- text_pattern_ops serves LIKE 'execution.%' whatever the database's collation).
CREATE INDEX events_by_type ON events (event_type text_pattern_ops, transaction_id, position);

-- The audit log by actor, in log order.
CREATE INDEX events_by_actor ON events ((metadata->>'actor'), transaction_id, position);

-- The audit log's default view: what people and programs did, without the engine's own steps,
-- which are most of the log. The predicate is the one AuditLog writes out literally.
CREATE INDEX events_by_people ON events (transaction_id, position)
    WHERE COALESCE(metadata->>'source', '') NOT IN ('orchestrator', 'worker', 'scheduler', 'relay', 'pipeline-stage');
