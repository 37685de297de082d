-- What odoo-db's role holds on role $1. From PostgreSQL 16 on, the SET and INHERIT
-- (USAGE) options are apart from membership; before, membership gives both.
SELECT pg_has_role(current_user, $1::text::name, 'MEMBER'),{set_and_usage}
                        pg_has_role(current_user, $1::text::name, 'MEMBER WITH ADMIN OPTION')
