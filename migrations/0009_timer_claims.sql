-- Timers are claimed for a while instead of locked for the length of their firing (decision
-- 0010): a scheduler marks a batch of due timers as its own in one short statement, fires them
-- outside any transaction, and deletes each after it fired. A scheduler that dies leaves its
-- claims to expire, and another fires those timers again (the handlers are version-checked, so
-- that is harmless). No transaction stays open across handler calls, so gap-free readers of the
-- log never wait for a scheduler.
ALTER TABLE timers ADD COLUMN claimed_until timestamptz;
ALTER TABLE timers ADD COLUMN claimed_by uuid;
