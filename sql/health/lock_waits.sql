-- Sessions waiting for a lock, longest first, with the first session blocking each
-- (pg_blocking_pids()). Filled in by the server's version (src/health/probe/facts.rs):
-- from PostgreSQL 14, pg_locks.waitstart says when the wait began; before, the start of
-- the waiting statement stands in for it.
SELECT w.pid,
       w.usename::text AS user_name,
       w.datname::text AS database,
       extract(epoch FROM now() - {wait_start})::float8 AS waiting_seconds,
       b.pid AS blocker_pid,
       b.usename::text AS blocker_user,
       b.state AS blocker_state,
       b.application_name AS blocker_application
  FROM pg_stat_activity AS w
  LEFT JOIN pg_stat_activity AS b ON b.pid = (pg_blocking_pids(w.pid))[1]
 WHERE w.wait_event_type = 'Lock'
   AND w.pid <> pg_backend_pid()
 ORDER BY waiting_seconds DESC NULLS LAST
 LIMIT 20
