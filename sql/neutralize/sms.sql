-- sms: text messages go to Odoo's IAP test service, which sends nothing and charges
-- no credit (the `sms.endpoint` parameter exists with the same meaning in 14 to 18).
UPDATE public.ir_config_parameter SET value = 'https://iap-services-test.odoo.com'
 WHERE key = 'sms.endpoint' AND value IS DISTINCT FROM 'https://iap-services-test.odoo.com';

INSERT INTO public.ir_config_parameter (key, value)
SELECT 'sms.endpoint', 'https://iap-services-test.odoo.com'
 WHERE NOT EXISTS (SELECT FROM public.ir_config_parameter WHERE key = 'sms.endpoint');
