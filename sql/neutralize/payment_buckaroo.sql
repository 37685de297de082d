-- payment_buckaroo: Buckaroo: the website key and secret key are blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET buckaroo_website_key = NULL, buckaroo_secret_key = NULL
 WHERE buckaroo_website_key IS NOT NULL OR buckaroo_secret_key IS NOT NULL;
