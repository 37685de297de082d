-- payment_mollie: Mollie: the API key is blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET mollie_api_key = NULL
 WHERE mollie_api_key IS NOT NULL;
