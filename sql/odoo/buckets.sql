-- The object-store buckets that attachments point at (`s3://bucket/key` in store_fname).
SELECT DISTINCT substring(store_fname from '^[a-z0-9]+://[^/]+')
  FROM public.ir_attachment
 WHERE store_fname ~ '^[a-z0-9]+://'
 ORDER BY 1
