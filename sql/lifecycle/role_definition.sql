-- A role's definition, for the file retire keeps beside the archive: its attributes
-- as CREATE ROLE spells them, its own settings (any database), the roles it belongs
-- to and its comment. $1 role.
SELECT concat_ws(' ',
           CASE WHEN r.rolsuper THEN 'SUPERUSER' ELSE 'NOSUPERUSER' END,
           CASE WHEN r.rolinherit THEN 'INHERIT' ELSE 'NOINHERIT' END,
           CASE WHEN r.rolcreaterole THEN 'CREATEROLE' ELSE 'NOCREATEROLE' END,
           CASE WHEN r.rolcreatedb THEN 'CREATEDB' ELSE 'NOCREATEDB' END,
           CASE WHEN r.rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END,
           CASE WHEN r.rolreplication THEN 'REPLICATION' ELSE 'NOREPLICATION' END,
           CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' ELSE 'NOBYPASSRLS' END,
           'CONNECTION LIMIT ' || r.rolconnlimit,
           CASE WHEN r.rolvaliduntil IS NOT NULL THEN 'VALID UNTIL ' || quote_literal(r.rolvaliduntil::text) END),
       coalesce((SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                  WHERE s.setrole = r.oid AND s.setdatabase = 0), '{}'::text[]),
       coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname)
                   FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                  WHERE m.member = r.oid), '{}'::text[]),
       pg_catalog.shobj_description(r.oid, 'pg_authid')
  FROM pg_catalog.pg_roles r
 WHERE r.rolname = $1
