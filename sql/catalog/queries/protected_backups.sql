-- Backups that unfinished runs still need: retention never deletes them.
SELECT backup_path FROM catalog.recreates WHERE finished_at IS NULL AND backup_path IS NOT NULL
UNION
SELECT restore_path FROM catalog.recreates WHERE finished_at IS NULL AND restore_path IS NOT NULL
