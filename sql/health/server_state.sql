-- What every server reports the same on PostgreSQL 12 to 18: the size of pg_wal
-- (pg_ls_waldir(), readable by pg_monitor; a full WAL disk stops the cluster) and the
-- settings changed but waiting for a restart.
SELECT (SELECT coalesce(sum(size), 0) FROM pg_ls_waldir())::bigint AS wal_bytes,
       (SELECT count(*) FROM pg_ls_waldir())::bigint AS wal_files,
       ARRAY(SELECT name::text FROM pg_settings WHERE pending_restart ORDER BY name)
           AS pending_restart
