-- A later run starts over an earlier one that stopped before anything was dropped.
-- $1 database.
UPDATE catalog.recreates SET outcome = 'superseded', finished_at = now(), updated_at = now()
 WHERE database = $1 AND finished_at IS NULL
