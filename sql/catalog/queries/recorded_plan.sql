-- The plan a run recorded: of the run whose backup is $2, else the newest ($2 NULL).
-- $1 database, $2 backup path or NULL.
SELECT plan FROM catalog.recreates
 WHERE database = $1 AND ($2::text IS NULL OR backup_path = $2)
 ORDER BY id DESC LIMIT 1
