-- odoo-db catalog, version 6: the customer lifecycle (rotate, suspend, resume, retire).
--
-- Each of these commands records what it is about to do before it does it, so a rerun
-- finishes the job from the record and never from what is left on the server.

-- A retired customer and its databases stay recorded (their names are tombstones), but
-- no longer count as managed: the customer's name stops restricting new names.
ALTER TABLE catalog.customers ADD COLUMN retired_at timestamptz;
ALTER TABLE catalog.databases ADD COLUMN retired_at timestamptz;

-- What suspend found before it changed anything: the role's LOGIN and the database's
-- properties (its ACL above all: every CONNECT grantee, PUBLIC and grant options
-- included). resume puts exactly that back; one active suspension per database.
CREATE TABLE catalog.suspensions (
    id            bigserial PRIMARY KEY,
    database      text NOT NULL,
    environment   text NOT NULL,
    cluster       text NOT NULL,
    role          text NOT NULL,
    rolcanlogin   boolean NOT NULL,
    -- datacl as the server printed it (NULL: the default ACL), for people reading.
    datacl        text,
    -- dbprops::DbProps as JSON: what resume's ACL statements are computed from.
    props         jsonb NOT NULL,
    actor         text NOT NULL,
    suspended_at  timestamptz NOT NULL DEFAULT now(),
    resumed_at    timestamptz,
    resumed_by    text,
    FOREIGN KEY (environment, database) REFERENCES catalog.databases (environment, name)
);
CREATE UNIQUE INDEX suspensions_active ON catalog.suspensions (environment, database)
    WHERE resumed_at IS NULL;

-- A new password written to a secrets file (prepared) and set on the role (applied).
-- Only the file's path is recorded: odoo-db never stores a secret.
CREATE TABLE catalog.rotations (
    id              bigserial PRIMARY KEY,
    database        text NOT NULL,
    environment     text NOT NULL,
    cluster         text NOT NULL,
    secrets_file    text NOT NULL,
    actor           text NOT NULL,
    prepared_at     timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz,
    sessions_ended  integer,
    FOREIGN KEY (environment, database) REFERENCES catalog.databases (environment, name)
);
CREATE INDEX rotations_file ON catalog.rotations (secrets_file);

-- One retirement per database: its step, and the verified archive written before the
-- drop (path, size, SHA-256), with the properties and role definition beside it.
-- planned -> archived -> dropped -> done.
CREATE TABLE catalog.retirements (
    id              bigserial PRIMARY KEY,
    customer        text NOT NULL REFERENCES catalog.customers,
    database        text NOT NULL,
    environment     text NOT NULL,
    cluster         text NOT NULL,
    step            text NOT NULL CHECK (step IN ('planned', 'archived', 'dropped', 'done')),
    archive_path    text,
    archive_bytes   bigint,
    archive_sha256  text,
    props_path      text,
    role_path       text,
    actor           text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (environment, database),
    FOREIGN KEY (environment, database) REFERENCES catalog.databases (environment, name)
);

-- Names a retired customer held: never generated nor accepted again.
CREATE TABLE catalog.tombstones (
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('database', 'role')),
    customer      text NOT NULL,
    environment   text NOT NULL,
    cluster       text NOT NULL,
    archive_path  text,
    retired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, kind)
);
REVOKE UPDATE, DELETE, TRUNCATE ON catalog.tombstones FROM PUBLIC;
