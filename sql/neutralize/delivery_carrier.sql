-- delivery_* (one file for every carrier integration): carriers that call a shipping
-- provider's API are switched out of the production environment and deactivated, so
-- the copy neither books real shipments nor prints real labels with production's
-- account. Odoo's own files blank each carrier's credentials instead, but their
-- columns change between majors (a carrier's SOAP credentials give way to REST ones),
-- so odoo-db uses what the delivery module has in every major 14 to 18:
-- delivery_type, prod_environment and active. Every carrier but the built-in fixed
-- price and rule-based ones is an external integration, whatever its type is called.
UPDATE public.delivery_carrier SET prod_environment = false, active = false
 WHERE delivery_type NOT IN ('fixed', 'base_on_rule') AND (prod_environment OR active);
