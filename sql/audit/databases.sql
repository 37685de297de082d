-- Every database of a cluster for the audit: its owner, and whether PUBLIC may connect
-- (has_database_privilege accepts the pseudo-role `public`; a NULL datacl means the
-- default privileges, which give PUBLIC CONNECT and TEMPORARY).
SELECT d.datname::text AS name,
       pg_get_userbyid(d.datdba)::text AS owner,
       has_database_privilege('public', d.oid, 'CONNECT') AS public_connect,
       d.datistemplate AS is_template
  FROM pg_database AS d
 ORDER BY d.datname
