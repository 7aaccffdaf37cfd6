-- Event retention (OTTER_EVENT_RETENTION) deletes the oldest events, and PostgreSQL then
-- writes new events into the space they leave. A BRIN summary only ever widens, so each
-- reused block range keeps the oldest time it ever held as its minimum: a time window that
-- ends in the past (a Grafana zoom into last week) then matches nearly every range and reads
-- most of the table. A B-tree stays exact, and retention finds the oldest events by it. Its
-- inserts land on the rightmost page, as the primary key's do: the benchmark's PostgreSQL CPU
-- per check read the same with either index (bench/README.md, session 11).
--
-- The new index is built before the old one is dropped, so reads go on meanwhile (writes wait:
-- otterd's writer queues them). On a large table an operator may build it beforehand without
-- blocking anything (README, "Upgrading"); then this does nothing.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_indexes
                 WHERE schemaname = current_schema() AND indexname = 'events_at'
                   AND indexdef LIKE '% USING btree %') THEN
    CREATE INDEX events_at_btree ON events (at);
    DROP INDEX IF EXISTS events_at;
    ALTER INDEX events_at_btree RENAME TO events_at;
  END IF;
END $$;
