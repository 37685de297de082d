-- What role $1 has in the cluster besides its own database $2, per pg_shdepend:
-- ownership of or privileges on objects in other databases, shared objects, policies.
-- The database's own row (its owner, its ACL) is not counted.
SELECT coalesce(d.datname::text, '(shared object)') || ': ' || count(*) || ' ' ||
        CASE s.deptype WHEN 'o' THEN 'owned' WHEN 'a' THEN 'privilege(s)' WHEN 'r' THEN 'policy reference(s)'
                       WHEN 'i' THEN 'initial privilege(s)' ELSE s.deptype::text END
   FROM pg_catalog.pg_shdepend s
   JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid AND s.refclassid = 'pg_catalog.pg_authid'::regclass
   LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
  WHERE r.rolname = $1
    AND s.dbid IS DISTINCT FROM (SELECT oid FROM pg_catalog.pg_database WHERE datname = $2)
    AND NOT (s.dbid = 0 AND s.classid = 'pg_catalog.pg_database'::regclass
             AND s.objid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = $2))
  GROUP BY d.datname, s.deptype
  ORDER BY 1
