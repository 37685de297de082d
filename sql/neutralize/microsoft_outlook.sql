-- microsoft_outlook: mail servers that authenticate with Outlook OAuth forget their
-- tokens, so the copy cannot send or fetch as production's mailboxes even if a server
-- is activated again by hand. Only the refresh and access tokens of
-- microsoft.outlook.mixin are touched (present since the module exists). Incoming
-- servers inherit the mixin from Odoo 16 on, where mail took fetchmail over.
UPDATE public.ir_mail_server
   SET microsoft_outlook_refresh_token = NULL, microsoft_outlook_access_token = NULL
 WHERE microsoft_outlook_refresh_token IS NOT NULL OR microsoft_outlook_access_token IS NOT NULL;

{outlook_fetchmail}
