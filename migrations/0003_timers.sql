-- Durable timers: what must happen at a given time (a wait stage elapsing, a poll back-off).
-- The scheduler role fires due timers by handling their message, which appends an event, and
-- deletes them in the same transaction that locked them; a crash before the commit fires the
-- timer again, and the version-checked handlers make that harmless. Rows are rebuilt when the
-- work that set them runs again, so the event log stays the only state that matters.
CREATE TABLE timers (
    -- Chosen by the setter so that setting the same timer twice keeps one.
    timer_id    text PRIMARY KEY,
    stream_id   text NOT NULL,
    due_at      timestamptz NOT NULL,
    message     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX timers_due ON timers (due_at);
