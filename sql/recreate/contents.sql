-- What a restore of this database's backup, run by odoo-db's role acting as the owner
-- ($1), could not create again as it is, asked inside the database at plan time:
--  * extensions that only a superuser may create (not trusted; {trusted} is
--    pg_available_extension_versions.trusted on PostgreSQL 13+, false before), or that
--    this server does not have;
--  * objects owned by another role than the owner (the restore makes everything the
--    owner's), including default privileges set for another role and event triggers
--    (a superuser's, always);
-- Objects that belong to an extension come with it and are left out, as are the
-- objects every database has (oid below FirstNormalObjectId, 16384), and what lives in
-- the schemas of temporary objects (pg_temp_N, pg_toast_temp_N: never dumped, owned by
-- the bootstrap superuser). Every name is schema-qualified: this runs in the customer's
-- database.
WITH owner AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
), owned (kind, name, owner_oid, classid, objid) AS (
    SELECT 'schema', n.nspname::text, n.nspowner,
           'pg_catalog.pg_namespace'::pg_catalog.regclass, n.oid
      FROM pg_catalog.pg_namespace n WHERE n.oid >= 16384 AND n.nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                          WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                          WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'type' ELSE 'relation' END,
           pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), c.relowner,
           'pg_catalog.pg_class'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid >= 16384 AND c.relkind NOT IN ('i', 'I', 't') AND n.nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT 'function', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname), p.proowner,
           'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid >= 16384 AND n.nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT 'type', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname), t.typowner,
           'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE t.oid >= 16384 AND t.typrelid = 0 AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
    UNION ALL
    SELECT 'operator', o.oid::pg_catalog.regoperator::text, o.oprowner,
           'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid
      FROM pg_catalog.pg_operator o WHERE o.oid >= 16384
    UNION ALL
    SELECT 'operator class', c.opcname::text, c.opcowner, 'pg_catalog.pg_opclass'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_opclass c WHERE c.oid >= 16384
    UNION ALL
    SELECT 'operator family', f.opfname::text, f.opfowner, 'pg_catalog.pg_opfamily'::pg_catalog.regclass, f.oid
      FROM pg_catalog.pg_opfamily f WHERE f.oid >= 16384
    UNION ALL
    SELECT 'collation', c.collname::text, c.collowner, 'pg_catalog.pg_collation'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_collation c WHERE c.oid >= 16384
    UNION ALL
    SELECT 'conversion', c.conname::text, c.conowner, 'pg_catalog.pg_conversion'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_conversion c WHERE c.oid >= 16384
    UNION ALL
    SELECT 'text search configuration', c.cfgname::text, c.cfgowner, 'pg_catalog.pg_ts_config'::pg_catalog.regclass, c.oid
      FROM pg_catalog.pg_ts_config c WHERE c.oid >= 16384
    UNION ALL
    SELECT 'text search dictionary', d.dictname::text, d.dictowner, 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, d.oid
      FROM pg_catalog.pg_ts_dict d WHERE d.oid >= 16384
    UNION ALL
    SELECT 'language', l.lanname::text, l.lanowner, 'pg_catalog.pg_language'::pg_catalog.regclass, l.oid
      FROM pg_catalog.pg_language l WHERE l.oid >= 16384
    UNION ALL
    SELECT 'foreign-data wrapper', w.fdwname::text, w.fdwowner,
           'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass, w.oid
      FROM pg_catalog.pg_foreign_data_wrapper w WHERE w.oid >= 16384
    UNION ALL
    SELECT 'foreign server', s.srvname::text, s.srvowner, 'pg_catalog.pg_foreign_server'::pg_catalog.regclass, s.oid
      FROM pg_catalog.pg_foreign_server s WHERE s.oid >= 16384
    UNION ALL
    SELECT 'event trigger', e.evtname::text, e.evtowner, 'pg_catalog.pg_event_trigger'::pg_catalog.regclass, e.oid
      FROM pg_catalog.pg_event_trigger e
    UNION ALL
    SELECT 'publication', p.pubname::text, p.pubowner, 'pg_catalog.pg_publication'::pg_catalog.regclass, p.oid
      FROM pg_catalog.pg_publication p
    UNION ALL
    SELECT 'statistics object', s.stxname::text, s.stxowner, 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, s.oid
      FROM pg_catalog.pg_statistic_ext s WHERE s.oid >= 16384
    UNION ALL
    SELECT 'large object', l.oid::text, l.lomowner, 'pg_catalog.pg_largeobject_metadata'::pg_catalog.regclass, l.oid
      FROM pg_catalog.pg_largeobject_metadata l
    UNION ALL
    SELECT 'default privileges', coalesce('in schema ' || n.nspname::text, 'everywhere'), d.defaclrole,
           'pg_catalog.pg_default_acl'::pg_catalog.regclass, d.oid
      FROM pg_catalog.pg_default_acl d LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
)
SELECT 'extension ' || e.extname || ' ' || e.extversion || CASE
           WHEN v.name IS NULL THEN ' (this version is not installed on the server)'
           ELSE ' (not trusted: only a superuser may create it)' END AS problem
  FROM pg_catalog.pg_extension e
  LEFT JOIN pg_catalog.pg_available_extension_versions v ON v.name = e.extname AND v.version = e.extversion
 WHERE e.extname <> 'plpgsql'
   AND (v.name IS NULL OR (v.superuser AND NOT {trusted}))
UNION ALL
SELECT o.kind || ' ' || o.name || ' (owner ' || coalesce(pg_catalog.pg_get_userbyid(o.owner_oid)::text, '?') || ')'
  FROM owned o
 WHERE o.owner_oid <> (SELECT oid FROM owner)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e')
ORDER BY 1
