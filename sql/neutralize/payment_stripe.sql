-- payment_stripe: the keys of the live account are blanked.
UPDATE public.{provider_table}
   SET stripe_secret_key = NULL, stripe_publishable_key = NULL, stripe_webhook_secret = NULL
 WHERE stripe_secret_key IS NOT NULL OR stripe_publishable_key IS NOT NULL OR stripe_webhook_secret IS NOT NULL;
