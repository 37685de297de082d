-- A refresh records its source, its spool and the integration role's login before the
-- point of no return, in one statement with its event.
-- $1 id, $2 source_database, $3 source_cluster, $4 source_server, $5 spool_path,
-- $6 role_could_login, $7 neutralized, $8 actor, $9 detail.
WITH r AS (
    UPDATE catalog.recreates
       SET source_database = $2, source_cluster = $3, source_server = $4, spool_path = $5,
           role_could_login = $6, neutralized = $7, updated_at = now()
     WHERE id = $1 RETURNING database, kind
)
INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
SELECT $8, kind, database, 'source', 'recorded', $9 FROM r
