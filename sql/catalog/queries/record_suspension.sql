-- Record what suspend found before it changes anything (nothing when a suspension of
-- the database is active already: that one holds the state from before).
-- $1 database, $2 environment, $3 cluster, $4 role, $5 rolcanlogin, $6 datacl,
-- $7 props, $8 actor.
INSERT INTO catalog.suspensions (database, environment, cluster, role, rolcanlogin, datacl, props, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (environment, database) WHERE resumed_at IS NULL DO NOTHING
