-- The latest finished refresh of each integration database.
SELECT DISTINCT ON (database) database, finished_at, source_database, source_server,
       coalesce(neutralized, false)
  FROM catalog.recreates
 WHERE kind = 'refresh' AND outcome = 'done'
 ORDER BY database, finished_at DESC
