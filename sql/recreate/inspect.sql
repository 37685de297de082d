-- Everything a recreate must know about one database, in one round trip: the
-- properties CREATE DATABASE does not copy from template0 (owner, encoding, locale,
-- tablespace, connection limit, ACL, comment, settings from pg_db_role_setting) and
-- what decides whether it may be dropped now (size, sessions, objects DROP refuses to
-- drop under). {locale_provider}, {icu_locale} and {icu_rules} are filled in by the
-- server's version: the columns appeared in PostgreSQL 15 (datlocprovider,
-- daticulocale), 16 (daticurules) and 17 (datlocale replaced daticulocale).
SELECT d.oid::bigint AS oid,
       pg_get_userbyid(d.datdba)::text AS owner,
       pg_encoding_to_char(d.encoding)::text AS encoding,
       d.datcollate::text AS collate,
       d.datctype::text AS ctype,
       {locale_provider} AS locale_provider,
       {icu_locale} AS icu_locale,
       {icu_rules} AS icu_rules,
       t.spcname::text AS tablespace,
       d.datconnlimit AS connection_limit,
       d.datallowconn AS allow_connections,
       d.datistemplate AS is_template,
       d.datacl::text AS acl_text,
       -- NULL means "the default ACL": compare effective ACLs, not their spelling.
       coalesce(d.datacl, acldefault('d', d.datdba))::text AS effective_acl,
       shobj_description(d.oid, 'pg_database') AS comment,
       pg_database_size(d.oid) AS size_bytes,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'item', i.n,
                      'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                      'grantor', pg_get_userbyid(a.grantor)::text,
                      'privilege', a.privilege_type,
                      'grantable', a.is_grantable)
                  ORDER BY i.n, a.privilege_type)
             FROM unnest(d.datacl) WITH ORDINALITY AS i(item, n),
                  LATERAL aclexplode(ARRAY[i.item]) AS a
       ), '[]'::jsonb) AS acl,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END,
                      'config', to_jsonb(s.setconfig))
                  ORDER BY s.setrole <> 0, pg_get_userbyid(s.setrole))
             FROM pg_db_role_setting s
            WHERE s.setdatabase = d.oid
       ), '[]'::jsonb) AS settings,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'pid', a.pid,
                      'user', a.usename::text,
                      'application', a.application_name,
                      'client', coalesce(host(a.client_addr), 'local'),
                      'state', a.state,
                      'backend_type', a.backend_type,
                      'superuser', coalesce(r.rolsuper, false))
                  ORDER BY a.pid)
             FROM pg_stat_activity a
             LEFT JOIN pg_roles r ON r.oid = a.usesysid
            WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()
       ), '[]'::jsonb) AS sessions,
       ARRAY(
           SELECT 'replication slot ' || slot_name FROM pg_replication_slots WHERE database = d.datname
           UNION ALL
           SELECT 'prepared transaction ' || gid FROM pg_prepared_xacts WHERE database = d.datname
           UNION ALL
           SELECT 'subscription ' || subname FROM pg_subscription WHERE subdbid = d.oid
       ) AS blockers,
       current_setting('server_version_num')::int AS server_version_num,
       current_setting('server_version') AS server_version
  FROM pg_database d
  JOIN pg_tablespace t ON t.oid = d.dattablespace
 WHERE d.datname = $1
