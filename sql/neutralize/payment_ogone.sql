-- payment_ogone: Ogone (Odoo 14 to 16, removed in 17): the PSPID, API user, password and SHA
-- keys are blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET ogone_pspid = NULL, ogone_userid = NULL, ogone_password = NULL, ogone_shakey_in = NULL, ogone_shakey_out = NULL
 WHERE ogone_pspid IS NOT NULL OR ogone_userid IS NOT NULL OR ogone_password IS NOT NULL OR ogone_shakey_in IS NOT NULL OR ogone_shakey_out IS NOT NULL;
