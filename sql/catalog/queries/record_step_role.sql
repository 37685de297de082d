-- A step's throwaway role, recorded before it is created.
-- $1 role, $2 cluster, $3 database, $4 owner, $5 purpose, $6 actor.
INSERT INTO catalog.step_roles (role, cluster, database, owner, purpose, actor)
VALUES ($1, $2, $3, $4, $5, $6)
