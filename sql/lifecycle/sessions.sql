-- The client sessions on a database ($1) or of a role ($2), this one excepted, with
-- whether each is a superuser's (odoo-db may not end those).
SELECT a.pid, coalesce(a.usename::text, ''), coalesce(a.datname::text, ''),
        coalesce(a.application_name, ''), coalesce(r.rolsuper, false)
   FROM pg_catalog.pg_stat_activity a
   LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
  WHERE (a.datname = $1 OR a.usename = $2) AND a.pid <> pg_backend_pid()
    AND a.backend_type = 'client backend'
