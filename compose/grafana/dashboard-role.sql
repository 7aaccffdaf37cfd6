-- A read-only login for dashboards (Grafana): it reads every otter table and writes none.
-- Run once as the database owner, after otterd has created the schema:
--   psql "$OTTER_DB_URL" -v password="'<password>'" -f dashboard-role.sql
-- tests/integration/dashboards_test.cpp runs the dashboard's queries through this role.
CREATE ROLE otter_dashboard LOGIN PASSWORD :password;
GRANT USAGE ON SCHEMA public TO otter_dashboard;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO otter_dashboard;
-- Tables of later migrations too (created by the same owner).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO otter_dashboard;
