-- Backup paths that runs recorded before the catalog kept backups' digests (schema 3).
-- $1 database.
SELECT r.backup_path FROM catalog.recreates r
 WHERE r.database = $1 AND r.backup_path IS NOT NULL
   AND NOT EXISTS (SELECT FROM catalog.backups b WHERE b.path = r.backup_path)
 ORDER BY r.id DESC
