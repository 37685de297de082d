-- A run failed before the point of no return: it is abandoned and the database is
-- ready again, with the event, in one statement.
-- $1 id, $2 actor, $3 step reached, $4 detail.
WITH r AS (
    UPDATE catalog.recreates SET outcome = 'abandoned', finished_at = now(), updated_at = now()
     WHERE id = $1 AND finished_at IS NULL RETURNING database, kind
), d AS (
    UPDATE catalog.databases SET state = 'ready', updated_at = now()
     WHERE environment = 'integration' AND name IN (SELECT database FROM r)
)
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
SELECT $2, kind, database, $3, 'failed', $4 FROM r
