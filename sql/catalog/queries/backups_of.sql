-- The backups of a database recorded with their digest and not pruned, newest first.
-- $1 database.
SELECT path FROM catalog.backups WHERE database = $1 AND pruned_at IS NULL
 ORDER BY written_at DESC, path DESC
