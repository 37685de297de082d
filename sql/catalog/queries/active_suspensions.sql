-- Every active suspension, with its customer, for the audit.
SELECT d.customer, s.environment, s.database, s.cluster, s.suspended_at
  FROM catalog.suspensions s
  JOIN catalog.databases d ON d.environment = s.environment AND d.name = s.database
 WHERE s.resumed_at IS NULL AND d.retired_at IS NULL
 ORDER BY s.cluster, s.database
