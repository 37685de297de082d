-- What a dump of the database would bring that the copy must not get: event triggers
-- and foreign servers and user mappings (production's passwords) are refused;
-- publications are left out of the dump (they would start replicating).
SELECT 'refuse', 'event trigger ' || evtname FROM pg_catalog.pg_event_trigger
UNION ALL
SELECT 'refuse', 'foreign server ' || srvname FROM pg_catalog.pg_foreign_server
UNION ALL
SELECT 'refuse', 'user mapping of ' || usename || ' on ' || srvname FROM pg_catalog.pg_user_mappings
UNION ALL
SELECT 'leave out', 'publication ' || pubname FROM pg_catalog.pg_publication
UNION ALL
SELECT 'extension', extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'
UNION ALL
SELECT 'leave out', 'subscription ' || subname FROM pg_catalog.pg_subscription
 WHERE subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
