-- payment_payulatam: PayU Latam (14 to 16, removed in 17): merchant id, account id and API key are
-- blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET payulatam_merchant_id = NULL, payulatam_account_id = NULL, payulatam_api_key = NULL
 WHERE payulatam_merchant_id IS NOT NULL OR payulatam_account_id IS NOT NULL OR payulatam_api_key IS NOT NULL;
