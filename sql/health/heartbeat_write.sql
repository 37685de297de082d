-- The heartbeat: bump the one row of heartbeat.beat (created by `odoo-db init`) and stamp
-- it with the primary's clock. One statement, so one round trip and its own transaction:
-- set_config(..., true) is SET LOCAL synchronous_commit = local for this transaction, so a
-- synchronous standby that is down cannot make the commit (and the health run) hang.
WITH local_commit AS (
    SELECT set_config('synchronous_commit', 'local', true)
)
UPDATE heartbeat.beat
   SET beat = beat + 1, written_at = now()
  FROM local_commit
 WHERE id = 1
RETURNING beat
