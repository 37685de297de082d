-- A run wrote its backup: path, size and SHA-256 together with the step and the event,
-- in one statement (`restore` accepts only a file recorded here that still matches).
-- $1 id, $2 path, $3 bytes, $4 actor, $5 detail, $6 sha256.
WITH r AS (
    UPDATE catalog.recreates SET backup_path = $2, backup_bytes = $3, step = 'backed_up', updated_at = now()
     WHERE id = $1 RETURNING database, kind
), b AS (
    INSERT INTO catalog.backups (path, database, recreate_id, bytes, sha256)
    SELECT $2, database, $1, $3, $6 FROM r
    ON CONFLICT (path) DO UPDATE SET database = excluded.database, recreate_id = excluded.recreate_id,
        bytes = excluded.bytes, sha256 = excluded.sha256, written_at = now(), pruned_at = NULL
)
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
SELECT $4, kind, database, 'backed_up', 'done', $5 FROM r
