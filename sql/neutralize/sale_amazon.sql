-- sale_amazon: Amazon seller accounts stop speaking for production (no order sync,
-- no stock or shipment pushed to the marketplace). The seller key is a required
-- column (NOT NULL), so it gets a marker rather than NULL; it exists in every major
-- 14 to 18. The SP-API refresh token, also required, is replaced from 16 on.
UPDATE public.amazon_account SET seller_key = 'neutralized'{amazon_token}
 WHERE seller_key IS DISTINCT FROM 'neutralized'{amazon_token_where};
