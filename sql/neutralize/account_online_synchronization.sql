-- account_online_synchronization: bank synchronization links stop speaking for
-- production. Their client id is replaced by the marker Odoo's own neutralization
-- uses ('duplicate'), which the synchronization proxy does not accept as
-- production's client; only client_id, present on account_online_link in every
-- major 14 to 18, is touched.
UPDATE public.account_online_link SET client_id = 'duplicate'
 WHERE client_id IS DISTINCT FROM 'duplicate';
