-- storesync schema, version 5: the outbox in claim order.
-- A claim takes the oldest due rows (changed_at, id). With only outbox_due (ordered by
-- next_attempt_at) SQLite sorted every pending row of the entity to return the first few hundred:
-- 12 ms a claim with 20,000 rows pending, paid again on every batch of a bulk push. This index lets
-- the claim merge the pending and failed rows in order and stop at its limit (1.6 ms).

CREATE INDEX outbox_queue ON outbox(channel, entity, state, changed_at, id);
