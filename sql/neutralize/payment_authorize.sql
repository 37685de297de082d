-- payment_authorize: Authorize.Net: the API login, transaction key and client key are blanked (all
-- three present 14 to 18).
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET authorize_login = NULL, authorize_transaction_key = NULL, authorize_client_key = NULL
 WHERE authorize_login IS NOT NULL OR authorize_transaction_key IS NOT NULL OR authorize_client_key IS NOT NULL;
