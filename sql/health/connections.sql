-- Connection slots, filled in by the server's version (src/health/probe/facts.rs):
-- client backends against max_connections minus the reserved slots
-- (superuser_reserved_connections, and reserved_connections from PostgreSQL 16).
-- WAL senders, autovacuum and background workers have slots of their own. odoo-db's own
-- session is left out.
SELECT (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::bigint AS used,
       current_setting('max_connections')::bigint AS max_connections,
       current_setting('superuser_reserved_connections')::bigint
           + {reserved_connections} AS reserved
