-- Polled on a standby until it shows the primary's new heartbeat. Each poll also measures
-- the byte lag against $1, the primary's WAL position right after the heartbeat commit
-- (passed as text, computed here by pg_wal_lsn_diff), so the figures reported are those of
-- the moment the heartbeat was seen, or of the end of the wait.
SELECT beat,
       written_at,
       now() AS now,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint AS lag_bytes,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_receive_lsn())::bigint AS receive_lag_bytes,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes
  FROM heartbeat.beat
 WHERE id = 1
