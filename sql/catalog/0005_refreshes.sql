-- odoo-db catalog, version 5: refreshes (an integration database replaced by a
-- neutralized copy of its production twin).
--
-- A refresh is a run of catalog.recreates (kind 'refresh'), so that an unfinished one
-- is the unfinished run of the name: recreate, restore and retire refuse the name
-- while it lasts, and the next refresh finishes it. It records, before the point of
-- no return, what the window changes and must put back (whether the integration role
-- could log in), and where the production dump waits for a rerun; then the steps
-- 'dumped' (the dump is complete in the spool) and 'neutralized' (the neutralization
-- committed; before it, nobody but odoo-db may connect to the copy).
ALTER TABLE catalog.recreates DROP CONSTRAINT recreates_kind_check;
ALTER TABLE catalog.recreates ADD CONSTRAINT recreates_kind_check
    CHECK (kind IN ('recreate', 'restore', 'refresh'));
ALTER TABLE catalog.recreates DROP CONSTRAINT recreates_step_check;
ALTER TABLE catalog.recreates ADD CONSTRAINT recreates_step_check
    CHECK (step IN ('planned', 'backed_up', 'dumped', 'blocking', 'dropped', 'created',
                    'restored', 'neutralized', 'done'));

-- The production database copied, its cluster and the server the dump came from
-- ('standby NAME' or 'primary').
ALTER TABLE catalog.recreates ADD COLUMN source_database text;
ALTER TABLE catalog.recreates ADD COLUMN source_cluster text;
ALTER TABLE catalog.recreates ADD COLUMN source_server text;
-- The directory-format dump in the spool, while a rerun may need it.
ALTER TABLE catalog.recreates ADD COLUMN spool_path text;
-- rolcanlogin of the integration role before the window made it NOLOGIN.
ALTER TABLE catalog.recreates ADD COLUMN role_could_login boolean;
-- Whether the copy was neutralized (false: --no-neutralize); NULL for other kinds.
ALTER TABLE catalog.recreates ADD COLUMN neutralized boolean;
