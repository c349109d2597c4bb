-- Trigger intake (decision 0015) asks which saved pipelines have a trigger of a type (and
-- source, or CI master): `config->'triggers' @> '[{"type": "webhook", "source": "x"}]'`. This
-- index answers it from the projection of saved pipelines, whatever their number.
CREATE INDEX pipeline_configs_by_trigger ON pipeline_configs USING gin ((config->'triggers') jsonb_path_ops) WHERE NOT deleted;

-- Trigger receipts by time, for finding those a crash left open (decision 0015): after a first
-- full look, each API process looks only at the last hour's.
CREATE INDEX events_trigger_receipts ON events (recorded_at) WHERE event_type = 'trigger.received';
