-- Archiving (the same on PostgreSQL 12 to 18): archive_mode, pg_stat_archiver, the
-- .ready files waiting in pg_wal/archive_status (pg_ls_archive_statusdir(), PostgreSQL
-- 12+, readable by pg_monitor), and the WAL position to count segments not yet
-- archived from (the primary's insert position; on a standby the received one). A
-- failure is current when it is newer than the last success.
SELECT current_setting('archive_mode') AS archive_mode,
       s.archived_count,
       s.failed_count,
       s.last_archived_wal,
       s.last_failed_wal,
       extract(epoch FROM now() - s.last_archived_time)::float8 AS last_archived_age_seconds,
       (s.last_failed_time IS NOT NULL
        AND (s.last_archived_time IS NULL OR s.last_failed_time > s.last_archived_time))
           AS failing,
       (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::bigint
           AS ready_count,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
            ELSE pg_current_wal_lsn() END::text AS position_lsn,
       pg_size_bytes(current_setting('wal_segment_size')) AS wal_segment_size
  FROM pg_stat_archiver AS s
