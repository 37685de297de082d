-- Sessions of each role that has a CONNECTION LIMIT (the same on PostgreSQL 12 to 18):
-- a customer role at its limit takes the customer's site down. odoo-db's own session is
-- left out.
SELECT r.rolname::text AS role,
       r.rolconnlimit::bigint AS connection_limit,
       count(a.pid)::bigint AS sessions
  FROM pg_roles AS r
  LEFT JOIN pg_stat_activity AS a
         ON a.usename = r.rolname
        AND a.backend_type = 'client backend'
        AND a.pid <> pg_backend_pid()
 WHERE r.rolconnlimit >= 0
 GROUP BY r.rolname, r.rolconnlimit
 ORDER BY r.rolname
