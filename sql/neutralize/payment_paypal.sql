-- payment_paypal: PayPal: the receiving account and the PDT token are blanked (14 to 18); the REST
-- client credentials too from 18, where the REST integration replaced the form.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET paypal_email_account = NULL, paypal_pdt_token = NULL{paypal_rest}
 WHERE paypal_email_account IS NOT NULL OR paypal_pdt_token IS NOT NULL{paypal_rest_where};
