-- A provision starts a database (owner = name); a rerun finds it recorded already.
-- $1 name, $2 environment, $3 customer, $4 cluster.
INSERT INTO catalog.databases (name, environment, customer, cluster, state, owner)
VALUES ($1, $2, $3, $4, 'provisioning', $1)
ON CONFLICT (environment, name) DO NOTHING
