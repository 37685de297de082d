-- payment_sips: Worldline Sips: the merchant id and secret are blanked (14 to 18).
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET sips_merchant_id = NULL, sips_secret = NULL
 WHERE sips_merchant_id IS NOT NULL OR sips_secret IS NOT NULL;
