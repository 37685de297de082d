-- A run ended: done, the database ready, and the event, in one statement.
-- $1 id, $2 actor, $3 detail.
WITH r AS (
    UPDATE catalog.recreates SET step = 'done', outcome = 'done', finished_at = now(), updated_at = now()
     WHERE id = $1 RETURNING database, kind
), d AS (
    UPDATE catalog.databases SET state = 'ready', updated_at = now()
     WHERE environment = 'integration' AND name IN (SELECT database FROM r)
)
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
SELECT $2, kind, database, 'done', 'done', $3 FROM r
