-- The primary's WAL senders (the same on PostgreSQL 12 to 18). Rows of a base backup or of
-- a sender still starting up are not standbys. A NULL state means the role may not read
-- the details (it needs pg_monitor or pg_read_all_stats); such rows are kept so the check
-- can say so. The pid ties a row to the replication slot a standby streams through
-- (pg_replication_slots.active_pid), which identifies it whatever its application_name.
SELECT pid,
       application_name,
       state,
       sync_state,
       client_addr::text AS client_addr
  FROM pg_stat_replication
 WHERE coalesce(state, '') NOT IN ('startup', 'backup')
