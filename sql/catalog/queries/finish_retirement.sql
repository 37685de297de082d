-- A retired database: its names become tombstones, the retirement is done and the
-- database no longer counts as managed, all in one statement.
-- $1 id, $2 customer, $3 environment, $4 database, $5 cluster, $6 archive path.
WITH tombstones AS (
    INSERT INTO catalog.tombstones (name, kind, customer, environment, cluster, archive_path)
    VALUES ($4, 'database', $2, $3, $5, $6), ($4, 'role', $2, $3, $5, $6)
    ON CONFLICT (name, kind) DO NOTHING
), retired AS (
    UPDATE catalog.databases SET retired_at = coalesce(retired_at, now()), updated_at = now()
     WHERE environment = $3 AND name = $4
)
UPDATE catalog.retirements SET step = 'done', finished_at = coalesce(finished_at, now()), updated_at = now()
 WHERE id = $1
