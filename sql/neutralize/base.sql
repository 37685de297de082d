-- base: no mail leaves, no scheduled job runs, the copy gets an identity of its own.
-- Every statement can run twice (a rerun after a crash neutralizes again).

-- Real outgoing mail servers stop sending.
UPDATE public.ir_mail_server SET active = false WHERE active AND smtp_host IS DISTINCT FROM 'invalid';

-- A catch-all server that goes nowhere, active: with no active server Odoo falls back
-- to the SMTP server of its own configuration file, which may be production's.
INSERT INTO public.ir_mail_server (name, smtp_host, smtp_port, smtp_encryption, {auth_column}active, sequence)
SELECT 'odoo-db neutralization: mail goes nowhere', 'invalid', 1025, 'none', {auth_value}true, 0
 WHERE NOT EXISTS (SELECT FROM public.ir_mail_server WHERE active AND smtp_host = 'invalid');

-- Every scheduled job stops but the autovacuum, found by its XML id (a name can be
-- translated or renamed).
UPDATE public.ir_cron c SET active = false
 WHERE c.active
   AND NOT EXISTS (SELECT FROM public.ir_model_data d
                    WHERE d.model = 'ir.cron' AND d.module = 'base' AND d.name = 'autovacuum_job'
                      AND d.res_id = c.id);

{webhooks}

-- A new identity: the copy must not pass for production with Odoo's services (IAP,
-- the publisher warranty) nor share its secret (signed tokens, sessions).
UPDATE public.ir_config_parameter
   SET value = md5(random()::text || clock_timestamp()::text)::uuid::text
 WHERE key IN ('database.uuid', 'database.secret');

DELETE FROM public.ir_config_parameter WHERE key = 'database.enterprise_code';

UPDATE public.ir_config_parameter SET value = 'true' WHERE key = 'database.is_neutralized';

INSERT INTO public.ir_config_parameter (key, value)
SELECT 'database.is_neutralized', 'true'
 WHERE NOT EXISTS (SELECT FROM public.ir_config_parameter WHERE key = 'database.is_neutralized');
