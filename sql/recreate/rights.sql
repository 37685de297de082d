-- What odoo-db's role may do that recreating a database with given properties needs,
-- asked before anything changes: $1 the owner, $2 the tablespace, $3 the names of the
-- settings to restore. {set_privilege} is has_parameter_privilege(name, 'SET') on
-- PostgreSQL 15+ (GRANT SET ON PARAMETER), false before.
SELECT me.rolsuper AS superuser,
       me.rolcreatedb AS createdb,
       me.rolcreaterole AS createrole,
       current_user::text AS agent,
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS signal_backend,
       (SELECT rolsuper FROM pg_roles WHERE rolname = $1) AS owner_superuser,
       (SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = $1) AS owner_member,
       (SELECT $2 = 'pg_default' OR has_tablespace_privilege($2, 'CREATE')
          FROM pg_tablespace WHERE spcname = $2) AS tablespace_create,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'name', n.name,
                      'context', p.context,
                      'may_set', CASE WHEN p.name IS NULL THEN false ELSE {set_privilege} END))
             FROM unnest($3::text[]) AS n(name)
             LEFT JOIN pg_settings p ON lower(p.name) = lower(n.name)
       ), '[]'::jsonb) AS settings
  FROM pg_roles me
 WHERE me.rolname = current_user
