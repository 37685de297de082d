-- payment_flutterwave: Flutterwave (16 on): the public and secret keys and the webhook secret are blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET flutterwave_public_key = NULL, flutterwave_secret_key = NULL, flutterwave_webhook_secret = NULL
 WHERE flutterwave_public_key IS NOT NULL OR flutterwave_secret_key IS NOT NULL OR flutterwave_webhook_secret IS NOT NULL;
