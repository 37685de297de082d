-- pos_* payment terminals (one file for every terminal integration): point-of-sale
-- payment methods that drive a card terminal are deactivated, so the copy charges no
-- real card through production's terminals or their cloud accounts. Odoo's own files
-- put each integration in test mode or blank its keys, in columns that differ per
-- terminal and major; odoo-db uses what point_of_sale has in every major 14 to 18:
-- use_payment_terminal (set for every terminal-driven method) and active.
UPDATE public.pos_payment_method SET active = false
 WHERE use_payment_terminal IS NOT NULL AND active;
