-- google_calendar: users' Google tokens are forgotten, so the copy cannot read or
-- write production users' calendars. The tokens live on res_users before Odoo 16 and
-- on res_users_settings from 16 on; only the two token columns, present in every
-- major, are blanked before 16 (the "synchronization stopped" flag is set from 16 on,
-- where Odoo's own neutralization sets it).
UPDATE public.{gcal_table}
   SET google_calendar_rtoken = NULL, google_calendar_token = NULL{gcal_stopped}
 WHERE google_calendar_rtoken IS NOT NULL OR google_calendar_token IS NOT NULL{gcal_stopped_where};
