-- iap: every account token is disabled (kept recognisable, suffixed `+disabled`).
UPDATE public.iap_account SET account_token = regexp_replace(account_token, '(\+.*)?$', '+disabled')
 WHERE account_token IS NOT NULL AND account_token NOT LIKE '%+disabled';
