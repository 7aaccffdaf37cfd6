-- Every check appends two events, so each index on events costs PostgreSQL an insert per event
-- on the hot path (bench/, README "Performance").
--
-- Events arrive in time order: a BRIN index answers time ranges (Grafana, the start-up load of
-- recent offers) from a few pages where the B-tree took one entry per row.
DROP INDEX events_at;
CREATE INDEX events_at ON events USING brin (at);

-- Most events (checks, offers of no update) name no rollout; queries ask for one rollout.
DROP INDEX events_rollout;
CREATE INDEX events_rollout ON events (rollout, id) WHERE rollout IS NOT NULL;
