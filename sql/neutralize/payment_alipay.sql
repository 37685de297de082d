-- payment_alipay: Alipay (14 to 16, removed in 17): the partner id, MD5 key and seller email are
-- blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET alipay_merchant_partner_id = NULL, alipay_md5_signature_key = NULL, alipay_seller_email = NULL
 WHERE alipay_merchant_partner_id IS NOT NULL OR alipay_md5_signature_key IS NOT NULL OR alipay_seller_email IS NOT NULL;
