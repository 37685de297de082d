-- website: the copy answers no production domain and uses no CDN.
UPDATE public.website SET domain = NULL, cdn_activated = false
 WHERE domain IS NOT NULL OR cdn_activated;
