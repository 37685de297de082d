-- What an unfinished refresh recorded of its source, spool and window.
-- $1 id.
SELECT source_database, source_cluster, source_server, spool_path, role_could_login, neutralized
  FROM catalog.recreates WHERE id = $1
