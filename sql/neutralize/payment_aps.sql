-- payment_aps: Amazon Payment Services (16 on): the merchant identifier, access code and SHA
-- phrases are blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET aps_merchant_identifier = NULL, aps_access_code = NULL, aps_sha_request = NULL, aps_sha_response = NULL
 WHERE aps_merchant_identifier IS NOT NULL OR aps_access_code IS NOT NULL OR aps_sha_request IS NOT NULL OR aps_sha_response IS NOT NULL;
