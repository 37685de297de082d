-- Each database's lifecycle state for `list`: suspended since when, or retired when.
SELECT d.environment, d.name, s.suspended_at, d.retired_at
  FROM catalog.databases d
  LEFT JOIN catalog.suspensions s
    ON s.environment = d.environment AND s.database = d.name AND s.resumed_at IS NULL
 WHERE s.id IS NOT NULL OR d.retired_at IS NOT NULL
