-- A new password written to a secrets file, before the role gets it.
-- $1 database, $2 environment, $3 cluster, $4 secrets file, $5 actor.
INSERT INTO catalog.rotations (database, environment, cluster, secrets_file, actor)
VALUES ($1, $2, $3, $4, $5)
RETURNING id
