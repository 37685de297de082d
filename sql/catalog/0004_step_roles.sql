-- odoo-db catalog, version 4: throwaway login roles of steps that run customer code.
--
-- A step that executes inside a customer database with customer-written objects
-- (pg_restore of its backup, later neutralization) runs logged in as a role made for
-- that step alone (src/steprole.rs): a member of the customer role and of the group
-- role that pg_hba.conf admits, nothing else. The role is recorded here *before* it is
-- created and the row is deleted only after the role is dropped, so a run killed in
-- between leaves a row that the next run on the same database finds and cleans up.
CREATE TABLE catalog.step_roles (
    role        text PRIMARY KEY,
    cluster     text NOT NULL,
    database    text NOT NULL,
    -- The customer role the step acts for: what the role's leftovers are given to.
    owner       text NOT NULL,
    purpose     text NOT NULL,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX step_roles_database ON catalog.step_roles (cluster, database);
