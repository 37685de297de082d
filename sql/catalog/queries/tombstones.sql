-- Every tombstone, for `list --all` and the name checks.
SELECT name, kind, customer, environment, cluster, archive_path, retired_at
  FROM catalog.tombstones
 ORDER BY retired_at, name, kind
