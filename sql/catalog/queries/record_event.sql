-- One event appended to the log.
-- $1 actor, $2 command, $3 database, $4 step, $5 outcome, $6 detail.
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
VALUES ($1, $2, $3, $4, $5, $6)
