-- The active suspension of a database, if any.
-- $1 environment, $2 database.
SELECT id, rolcanlogin, datacl, props, suspended_at, actor
  FROM catalog.suspensions
 WHERE environment = $1 AND database = $2 AND resumed_at IS NULL
