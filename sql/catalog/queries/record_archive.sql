-- The verified final archive of a retirement, with its step, in one statement.
-- $1 id, $2 path, $3 bytes, $4 sha256.
UPDATE catalog.retirements
   SET archive_path = $2, archive_bytes = $3, archive_sha256 = $4, step = 'archived', updated_at = now()
 WHERE id = $1
