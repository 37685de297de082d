-- Physical replication slots, PostgreSQL 12: no wal_status or safe_wal_size yet (a slot
-- there retains WAL without limit; max_slot_wal_keep_size arrived in 13).
SELECT slot_name::text AS slot_name,
       active,
       active_pid,
       temporary,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       NULL::text AS wal_status,
       NULL::bigint AS safe_wal_size
  FROM pg_replication_slots
 WHERE slot_type = 'physical'
 ORDER BY slot_name
