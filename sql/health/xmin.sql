-- What holds back the xmin horizon on a primary, oldest first (the same on PostgreSQL 12
-- to 18): sessions with a snapshot or a transaction ID (running or idle in transaction),
-- WAL senders whose standby sends hot_standby_feedback (their backend_xmin; a standby
-- streaming through a slot feeds the slot's xmin instead), prepared transactions, and
-- replication slots (xmin, and catalog_xmin of logical slots). Ages in transactions
-- (age()) and, where the server knows when it began, in seconds. odoo-db's own session
-- is left out.
SELECT kind, pid, user_name, database, application, name, state, xid_age, age_seconds
  FROM (
    SELECT CASE WHEN a.backend_type = 'walsender' THEN 'hot_standby_feedback'
                WHEN a.state LIKE 'idle in transaction%' THEN 'idle_in_transaction'
                ELSE 'transaction' END AS kind,
           a.pid,
           a.usename::text AS user_name,
           a.datname::text AS database,
           a.application_name AS application,
           NULL::text AS name,
           a.state,
           greatest(age(a.backend_xmin), age(a.backend_xid))::bigint AS xid_age,
           CASE WHEN a.backend_type = 'walsender' THEN NULL
                ELSE extract(epoch FROM now() - a.xact_start)::float8 END AS age_seconds
      FROM pg_stat_activity AS a
     WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
       AND a.pid <> pg_backend_pid()
    UNION ALL
    SELECT 'prepared_transaction', NULL, owner::text, database::text, NULL, gid, NULL,
           age(transaction)::bigint,
           extract(epoch FROM now() - prepared)::float8
      FROM pg_prepared_xacts
    UNION ALL
    SELECT 'replication_slot', active_pid, NULL, database::text, NULL, slot_name::text,
           CASE WHEN active THEN 'active' ELSE 'inactive' END,
           greatest(age(xmin), age(catalog_xmin))::bigint,
           NULL
      FROM pg_replication_slots
     WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL
  ) AS holders
 ORDER BY xid_age DESC NULLS LAST, kind
 LIMIT 20
