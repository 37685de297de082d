-- Every database the catalog records, with the step of its unfinished run if any.
-- catalog.databases has no state of its own for a refresh (it records 'recreating'):
-- the unfinished run's kind says it.
SELECT d.customer, d.name, d.environment, d.cluster,
       CASE WHEN d.state = 'recreating' AND r.kind = 'refresh' THEN 'refreshing' ELSE d.state END,
       d.owner, d.created_at, d.updated_at, r.step
  FROM catalog.databases d
  LEFT JOIN catalog.recreates r
    ON r.database = d.name AND r.environment = d.environment AND r.finished_at IS NULL
 ORDER BY d.customer, d.environment DESC
