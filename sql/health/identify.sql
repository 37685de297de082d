-- Asked of every server first, the same on PostgreSQL 12 to 18: its version (which picks
-- the variants of the queries that follow), whether it is in recovery, its clock, the
-- cluster_name its WAL receiver uses as application_name by default, and on a primary the
-- current WAL position (pg_current_wal_lsn() raises an error during recovery, hence CASE).
-- The topology check compares the system identifier (pg_control_system(), readable by
-- pg_monitor) and the timeline: a primary's is that of its current WAL file; a server in
-- recovery reports the timeline its WAL receiver streams on (else its last restartpoint's)
-- and where it streams from, which tells a swapped pair from two unrelated failures.
SELECT current_setting('server_version_num')::int AS version_num,
       pg_is_in_recovery() AS in_recovery,
       now() AS now,
       current_setting('cluster_name') AS cluster_name,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       CASE WHEN pg_is_in_recovery()
            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))::bigint
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint
       END AS timeline,
       (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver) AS upstream
