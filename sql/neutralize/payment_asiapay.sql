-- payment_asiapay: AsiaPay (16 on): the merchant id and secure hash secret are blanked (the currency
-- and hash function are settings, not secrets, and are kept).
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET asiapay_merchant_id = NULL, asiapay_secure_hash_secret = NULL
 WHERE asiapay_merchant_id IS NOT NULL OR asiapay_secure_hash_secret IS NOT NULL;
