-- A run reached a step: the step and its event, in one statement.
-- $1 id, $2 step, $3 actor, $4 detail.
WITH r AS (
    UPDATE catalog.recreates SET step = $2, updated_at = now() WHERE id = $1 RETURNING database, kind
)
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
SELECT $3, kind, database, $2, 'done', $4 FROM r
