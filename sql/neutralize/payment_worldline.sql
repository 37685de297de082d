-- payment_worldline: Worldline (18): the PSPID, API key and secret and webhook key and secret are
-- blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET worldline_pspid = NULL, worldline_api_key = NULL, worldline_api_secret = NULL, worldline_webhook_key = NULL, worldline_webhook_secret = NULL
 WHERE worldline_pspid IS NOT NULL OR worldline_api_key IS NOT NULL OR worldline_api_secret IS NOT NULL OR worldline_webhook_key IS NOT NULL OR worldline_webhook_secret IS NOT NULL;
