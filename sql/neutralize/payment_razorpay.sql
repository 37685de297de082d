-- payment_razorpay: Razorpay (16 on): the key pair and webhook secret are blanked. Later releases add
-- OAuth columns (access and refresh tokens); only the three columns present since
-- 16 are touched, and without them no payment can be made.
-- The provider is out of live mode already (payment); no credential stays either.
UPDATE public.{provider_table}
   SET razorpay_key_id = NULL, razorpay_key_secret = NULL, razorpay_webhook_secret = NULL
 WHERE razorpay_key_id IS NOT NULL OR razorpay_key_secret IS NOT NULL OR razorpay_webhook_secret IS NOT NULL;
