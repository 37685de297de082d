-- An interrupted run is finished by this one (possibly of the other kind): its kind,
-- the database's state and the event, in one statement.
-- $1 id, $2 kind, $3 restore_path, $4 state, $5 actor, $6 detail.
WITH r AS (
    UPDATE catalog.recreates SET kind = $2, restore_path = coalesce($3, restore_path), updated_at = now()
     WHERE id = $1 RETURNING database
), d AS (
    UPDATE catalog.databases SET state = $4, updated_at = now()
     WHERE environment = 'integration' AND name IN (SELECT database FROM r)
)
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
SELECT $5, $2, database, 'resumed', 'started', $6 FROM r
