-- Queries a standby cancelled because replay needed what they held, per database and
-- reason (pg_stat_database_conflicts, the same columns on PostgreSQL 12 to 18 but for
-- 16's logical-slot one, left out). Reported as counters only.
SELECT datname::text AS database,
       confl_tablespace,
       confl_lock,
       confl_snapshot,
       confl_bufferpin,
       confl_deadlock
  FROM pg_stat_database_conflicts
 ORDER BY datname
