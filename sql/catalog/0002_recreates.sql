-- odoo-db catalog, version 2: recreate and restore runs.
--
-- A run records its plan (every captured property of the database) and its backup
-- before it blocks connections, and the step it reached after each one, so a run
-- killed at any point is finished by the next run of the same command from this
-- record, never by inspecting (and dumping) whatever is left on the server.
CREATE TABLE catalog.recreates (
    id           bigserial PRIMARY KEY,
    database     text NOT NULL,
    environment  text NOT NULL DEFAULT 'integration' CHECK (environment = 'integration'),
    cluster      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('recreate', 'restore')),
    -- The properties the new database gets (dbprops::DbProps as JSON).
    plan         jsonb NOT NULL,
    -- The backup this recreate wrote before the drop (NULL: --no-backup, or not yet).
    backup_path  text,
    backup_bytes bigint,
    -- The backup this restore puts back.
    restore_path text,
    -- planned -> backed_up -> blocking -> dropped -> created [-> restored] -> done.
    -- From 'blocking' on the recorded plan is the only truth: the database may be
    -- blocked, gone, or a new copy.
    step         text NOT NULL CHECK (step IN ('planned', 'backed_up', 'blocking', 'dropped',
                                               'created', 'restored', 'done')),
    -- NULL while unfinished; 'abandoned': stopped before anything was dropped;
    -- 'superseded': a later run started over before anything was dropped.
    outcome      text CHECK (outcome IN ('done', 'abandoned', 'superseded')),
    actor        text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK ((finished_at IS NULL) = (outcome IS NULL)),
    FOREIGN KEY (environment, database) REFERENCES catalog.databases (environment, name)
);

-- One unfinished run per database: the one a rerun finishes.
CREATE UNIQUE INDEX recreates_unfinished ON catalog.recreates (database) WHERE finished_at IS NULL;
-- Retention asks which backups unfinished runs still need.
CREATE INDEX recreates_backups ON catalog.recreates (database, started_at);
