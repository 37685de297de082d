-- On a standby (the same on PostgreSQL 12 to 18): the oldest transaction holding a
-- snapshot. It delays replay (max_standby_streaming_delay) or, with
-- hot_standby_feedback, holds back vacuum on the primary. odoo-db's own session is left
-- out.
SELECT pid,
       usename::text AS user_name,
       datname::text AS database,
       application_name AS application,
       state,
       extract(epoch FROM now() - xact_start)::float8 AS age_seconds
  FROM pg_stat_activity
 WHERE backend_xmin IS NOT NULL
   AND backend_type = 'client backend'
   AND pid <> pg_backend_pid()
 ORDER BY xact_start
 LIMIT 1
