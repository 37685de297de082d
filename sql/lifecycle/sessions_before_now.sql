-- The sessions of role $1 that started before now (before the ALTER ROLE that just
-- returned): they logged in with the old password.
SELECT pid FROM pg_catalog.pg_stat_activity
 WHERE usename = $1 AND backend_start < clock_timestamp() AND pid <> pg_backend_pid()
