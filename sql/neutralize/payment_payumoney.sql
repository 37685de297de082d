-- payment_payumoney: PayUmoney (14 to 16, removed in 17): the merchant key and salt are blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET payumoney_merchant_key = NULL, payumoney_merchant_salt = NULL
 WHERE payumoney_merchant_key IS NOT NULL OR payumoney_merchant_salt IS NOT NULL;
