-- microsoft_calendar: users' Outlook tokens are forgotten (on res_users, from
-- microsoft_account, in every major 14 to 18), so the copy cannot reach production
-- users' calendars. The sync token and "synchronization stopped" flag moved between
-- res_users and res_users_settings across majors; without the OAuth tokens they are
-- unusable, so only the columns present in every major are touched.
UPDATE public.res_users SET microsoft_calendar_token = NULL, microsoft_calendar_rtoken = NULL
 WHERE microsoft_calendar_token IS NOT NULL OR microsoft_calendar_rtoken IS NOT NULL;
