-- base, when the config gives refresh.web_base_url: links in the copy point at it.
-- $1 the URL.
UPDATE public.ir_config_parameter SET value = $1 WHERE key = 'web.base.url'
