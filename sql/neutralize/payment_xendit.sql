-- payment_xendit: Xendit (17 on): the secret key and webhook token are blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET xendit_secret_key = NULL, xendit_webhook_token = NULL
 WHERE xendit_secret_key IS NOT NULL OR xendit_webhook_token IS NOT NULL;
