-- The newest rotation recorded for a secrets file of a database, if any.
-- $1 environment, $2 database, $3 secrets file.
SELECT id, applied_at
  FROM catalog.rotations
 WHERE environment = $1 AND database = $2 AND secrets_file = $3
 ORDER BY prepared_at DESC
 LIMIT 1
