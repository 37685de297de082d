-- What audit judges of a copy of production: the neutralization flag,
-- real mail servers still active, scheduled jobs other than the autovacuum still active.
SELECT (SELECT value FROM public.ir_config_parameter WHERE key = 'database.is_neutralized'),
       (SELECT count(*) FROM public.ir_mail_server WHERE active AND smtp_host IS DISTINCT FROM 'invalid'),
       (SELECT count(*) FROM public.ir_cron c
         WHERE c.active
           AND NOT EXISTS (SELECT FROM public.ir_model_data d
                            WHERE d.model = 'ir.cron' AND d.module = 'base'
                              AND d.name = 'autovacuum_job' AND d.res_id = c.id))
