-- The one unfinished run of a database (a unique index allows no second).
-- $1 database.
SELECT id, kind, step, plan, backup_path, backup_bytes, restore_path, actor, started_at
  FROM catalog.recreates WHERE database = $1 AND finished_at IS NULL
