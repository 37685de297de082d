-- A standby's replication state, filled in by the server's version (src/health/probe.rs).
-- The pause state: from PostgreSQL 14, pg_get_wal_replay_pause_state() tells a requested
-- pause from a reached one, and also reports the pause recovery makes by itself when a
-- hot-standby setting (max_connections, ...) is lower than the primary's; before,
-- pg_is_wal_replay_paused() is all there is. The WAL receiver's flushed position is
-- received_lsn in PostgreSQL 12, flushed_lsn from 13.
-- No row in pg_stat_wal_receiver means no WAL receiver runs (LEFT JOIN keeps the rest); a
-- pid without a status means the role may not read the details. $1 is the primary's WAL
-- position (text), NULL when the primary could not be asked. receiver_conninfo (what
-- application_name the WAL receiver connected with) stays inside odoo-db: never reported.
SELECT {pause_state} AS pause_state,
       r.pid IS NOT NULL AS receiver_running,
       r.status AS receiver_status,
       extract(epoch FROM now() - r.last_msg_receipt_time)::float8 AS receiver_silent_seconds,
       (SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'wal_receiver_timeout')
           AS receiver_timeout_seconds,
       r.sender_host,
       r.sender_port,
       r.slot_name,
       r.conninfo AS receiver_conninfo,
       {receiver_flushed_lsn}::text AS receiver_flushed_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint AS lag_bytes,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_receive_lsn())::bigint AS receive_lag_bytes,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN pg_stat_wal_receiver AS r ON true
