-- odoo-db catalog, version 3: the backups odoo-db wrote.
--
-- `restore` only puts back a file that odoo-db itself wrote: its path, size and SHA-256
-- are recorded here when the backup is written (verified and renamed into place), and
-- a file that is not recorded, or whose size or digest differs, is refused. A file
-- planted in a backup directory under the right name proves nothing.
CREATE TABLE catalog.backups (
    -- Absolute, as written (the name carries the database and a UTC timestamp).
    path        text PRIMARY KEY,
    database    text NOT NULL,
    -- The recreate that wrote it.
    recreate_id bigint REFERENCES catalog.recreates,
    bytes       bigint NOT NULL CHECK (bytes >= 0),
    -- Lowercase hex of the SHA-256 of the whole file.
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    written_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when retention deleted the file.
    pruned_at   timestamptz
);
CREATE INDEX backups_database ON catalog.backups (database, written_at);
