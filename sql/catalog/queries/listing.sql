-- Every database the catalog records, with the step of its unfinished run if any.
SELECT d.customer, d.name, d.environment, d.cluster, d.state, d.owner, d.created_at, d.updated_at, r.step
  FROM catalog.databases d
  LEFT JOIN catalog.recreates r
    ON r.database = d.name AND r.environment = d.environment AND r.finished_at IS NULL
 ORDER BY d.customer, d.environment DESC
