-- Where each relay got to. Disposable: deleting a row republishes the log (consumers dedupe).
CREATE TABLE relay_checkpoints (
    relay_name      text PRIMARY KEY,
    -- The Kafka cluster the checkpoint refers to; another cluster means republishing.
    cluster_id      text NOT NULL,
    transaction_id  bigint NOT NULL,
    position        bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
