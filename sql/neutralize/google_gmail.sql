-- google_gmail: mail servers that authenticate with Gmail OAuth forget their refresh
-- token (the lasting credential; an access token expires within the hour), so the
-- copy cannot send or fetch as production's mailboxes even if a server is activated
-- again by hand. Only google_gmail_refresh_token is touched: the other columns of
-- google.gmail.mixin (authorization code, access token) come and go between releases.
-- Incoming servers inherit the mixin from Odoo 16 on, where mail took fetchmail over.
UPDATE public.ir_mail_server SET google_gmail_refresh_token = NULL
 WHERE google_gmail_refresh_token IS NOT NULL;

{gmail_fetchmail}
