-- account_edi_proxy_client (17 on, where proxy users carry proxy_type and edi_mode):
-- the copy's e-invoicing proxy users leave production, so it sends no legal invoice
-- to tax authorities or networks. Peppol, Italy's SdI, Denmark's Nemhandel and
-- France's PDP have no usable test platform from a copy and go to demo mode (no
-- network at all); the others go to their test platform. Malaysia's and Greece's
-- users are left to their own modules' neutralization, as Odoo's does: switching
-- them can collide with a test user the company already has. A collision elsewhere
-- fails the whole neutralization (it is one transaction), and the copy stays closed.
UPDATE public.account_edi_proxy_client_user
   SET edi_mode = CASE WHEN proxy_type IN ('l10n_it_edi', 'peppol', 'nemhandel', 'pdp') THEN 'demo' ELSE 'test' END
 WHERE edi_mode = 'prod' AND proxy_type NOT IN ('l10n_my_edi', 'l10n_gr_edi');
