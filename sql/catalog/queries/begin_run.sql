-- A recreate or restore begins: its plan, the database's state and the event, recorded
-- together in one statement.
-- $1 database, $2 cluster, $3 kind, $4 plan, $5 restore_path, $6 actor, $7 state, $8 detail.
WITH r AS (
    INSERT INTO catalog.recreates (database, cluster, kind, plan, restore_path, step, actor)
    VALUES ($1, $2, $3, $4, $5, 'planned', $6) RETURNING id
), d AS (
    UPDATE catalog.databases SET state = $7, updated_at = now()
     WHERE environment = 'integration' AND name = $1
), e AS (
    INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
    VALUES ($6, $3, $1, 'planned', 'recorded', $8)
)
SELECT id FROM r
