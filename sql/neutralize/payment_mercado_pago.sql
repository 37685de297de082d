-- payment_mercado_pago: Mercado Pago (16 on): the access token is blanked.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET mercado_pago_access_token = NULL
 WHERE mercado_pago_access_token IS NOT NULL;
