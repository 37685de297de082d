-- fetchmail (Odoo before 16, where mail took it over): incoming mail servers stop
-- fetching and forget their credentials.
UPDATE public.fetchmail_server SET active = false, password = NULL
 WHERE active OR password IS NOT NULL;
