-- Event retention (OTTER_EVENT_RETENTION) deletes the oldest events, and PostgreSQL then
-- writes new events into the space they leave. A BRIN summary only ever widens, so each
-- reused block range keeps the oldest time it ever held as its minimum: a time window that
-- ends in the past (a Grafana zoom into last week) then matches nearly every range and reads
-- most of the table. A B-tree stays exact. Its inserts all land on the rightmost page, as the
-- primary key's do: the benchmark's PostgreSQL CPU per check read the same with either index
-- (bench/README.md, session 11).
DROP INDEX events_at;
CREATE INDEX events_at ON events (at);
