-- cloud_storage_azure (17 on): the copy forgets production's Azure account and
-- container, so new attachments cannot be written to production's storage. Every
-- parameter of the module goes (by prefix, which also covers any added later).
DELETE FROM public.ir_config_parameter WHERE key LIKE 'cloud\_storage\_azure\_%';
