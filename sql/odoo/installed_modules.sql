-- The installed modules of an Odoo database and the version of each (`base` gives the
-- Odoo major version, e.g. 17.0.1.3).
SELECT name::text, coalesce(latest_version, '')::text
  FROM public.ir_module_module
 WHERE state = 'installed'
 ORDER BY name
