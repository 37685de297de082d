-- Physical replication slots, filled in by the server's version (src/health/probe.rs).
-- From PostgreSQL 13, wal_status says whether the WAL a slot needs is still guaranteed
-- (reserved, extended), at risk (unreserved) or gone (lost), and safe_wal_size how much
-- more can be written before it is at risk; both are NULL before (a slot there retains
-- WAL without limit: max_slot_wal_keep_size arrived in 13).
SELECT slot_name::text AS slot_name,
       active,
       active_pid,
       temporary,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       {wal_status},
       {safe_wal_size}
  FROM pg_replication_slots
 WHERE slot_type = 'physical'
 ORDER BY slot_name
