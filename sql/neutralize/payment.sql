-- payment: no provider takes real money.
UPDATE public.{provider_table} SET state = 'disabled' WHERE state = 'enabled';
