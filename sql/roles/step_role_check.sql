-- Whether odoo-db's role may add members to the step roles' group and to the owner,
-- and whether the group carries anything customer code would get.
-- {admin}: up to PostgreSQL 15 CREATEROLE is enough for a role that is no superuser;
-- from 16 on adding members needs ADMIN OPTION on the role.
SELECT r.rolname::text,
                        me.rolsuper OR (me.rolcreaterole AND ({admin})),
                        r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls OR r.rolcanlogin,
                        EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
                        current_user::text
                   FROM pg_catalog.pg_roles r, pg_catalog.pg_roles me
                  WHERE r.rolname IN ($1, $2) AND me.rolname = current_user
