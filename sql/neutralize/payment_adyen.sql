-- payment_adyen: Adyen: the merchant account is blanked in every major (present from 14 on, in both the
-- old hosted-page and the API integration); from 16 on the API key too.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET adyen_merchant_account = NULL{adyen_api_key}
 WHERE adyen_merchant_account IS NOT NULL{adyen_api_key_where};
