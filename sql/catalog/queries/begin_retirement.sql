-- Start (or find) the retirement of one database; its row says how far it got.
-- $1 customer, $2 database, $3 environment, $4 cluster, $5 actor.
INSERT INTO catalog.retirements (customer, database, environment, cluster, step, actor)
VALUES ($1, $2, $3, $4, 'planned', $5)
ON CONFLICT (environment, database) DO UPDATE SET updated_at = now()
RETURNING id, step, archive_path, archive_bytes, archive_sha256, props_path, role_path
