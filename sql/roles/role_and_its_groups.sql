-- Role $1 and every role it belongs to, directly or through others, with the
-- attributes that make a role more than a customer; $1 itself first.
WITH RECURSIVE up(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = $1
    UNION
    SELECT m.roleid FROM pg_auth_members m JOIN up ON m.member = up.oid
)
SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
       r.rolbypassrls, (r.oid < 16384 OR r.rolname LIKE 'pg\_%') AS builtin
FROM up JOIN pg_roles r ON r.oid = up.oid
ORDER BY r.rolname = $1 DESC, r.rolname
