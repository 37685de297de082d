-- The heartbeat row that health writes on a primary and waits for on its standbys.
-- One row: each run bumps `beat` and stamps it with the primary's clock, so a standby's
-- copy tells both "has it replayed my write" and "how old is what it shows".
-- Sent as one string, so one implicit transaction: the lock serialises concurrent inits,
-- whose IF NOT EXISTS would otherwise race (23505 on pg_namespace's unique index).
SELECT pg_advisory_xact_lock(hashtext('odoo-db: create the heartbeat table'));
CREATE SCHEMA IF NOT EXISTS heartbeat;
CREATE TABLE IF NOT EXISTS heartbeat.beat (
    id         integer PRIMARY KEY CHECK (id = 1),
    beat       bigint NOT NULL,
    written_at timestamptz NOT NULL
);
INSERT INTO heartbeat.beat VALUES (1, 0, now()) ON CONFLICT (id) DO NOTHING;
