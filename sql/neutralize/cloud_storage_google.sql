-- cloud_storage_google (17 on): the copy forgets production's bucket and service
-- account, so new attachments cannot be written to production's storage. Every
-- parameter of the module goes (by prefix, which also covers any added later).
DELETE FROM public.ir_config_parameter WHERE key LIKE 'cloud\_storage\_google\_%';
