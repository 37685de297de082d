-- A suspended customer's role and database as they are now: whether the role can log
-- in, and who besides odoo-db's own role (current_user) holds CONNECT (a NULL datacl is
-- the default, which gives PUBLIC CONNECT). $1 the role and database name.
SELECT r.rolcanlogin,
       coalesce((SELECT array_agg(coalesce(g.rolname::text, 'PUBLIC') ORDER BY 1)
                   FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a
                   LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
                  WHERE a.privilege_type = 'CONNECT'
                    AND a.grantee <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)),
                '{}'::text[]) AS holders
  FROM pg_catalog.pg_roles r
  LEFT JOIN pg_catalog.pg_database d ON d.datname = r.rolname
 WHERE r.rolname = $1
