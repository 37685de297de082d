-- Asked of every server first, the same on PostgreSQL 12 to 18: its version (which picks
-- the variants of the queries that follow), whether it is in recovery, its clock, the
-- cluster_name its WAL receiver uses as application_name by default, and on a primary the
-- current WAL position (pg_current_wal_lsn() raises an error during recovery, hence CASE).
SELECT current_setting('server_version_num')::int AS version_num,
       pg_is_in_recovery() AS in_recovery,
       now() AS now,
       current_setting('cluster_name') AS cluster_name,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn
