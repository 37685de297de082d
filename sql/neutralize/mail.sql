-- mail: templates lose the server they would force, queued mail is never sent,
-- incoming mail servers stop fetching and forget their credentials.
UPDATE public.mail_template SET mail_server_id = NULL WHERE mail_server_id IS NOT NULL;

UPDATE public.mail_mail SET state = 'cancel' WHERE state = 'outgoing';

{fetchmail}
