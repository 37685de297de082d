-- odoo-db catalog, version 1: customers, their databases, cluster identities, events.
CREATE SCHEMA IF NOT EXISTS catalog;

CREATE TABLE catalog.clusters (
    name              text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('production', 'integration')),
    -- pg_control_system().system_identifier, pinned by the first init: a config that
    -- later points this cluster at another server is refused.
    system_identifier numeric(20, 0) NOT NULL,
    pinned_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.customers (
    customer   text PRIMARY KEY,
    -- One base name per customer; the unique constraint is what makes two concurrent
    -- provisions of different customers unable to take the same name.
    base_name  text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.databases (
    name        text NOT NULL,
    environment text NOT NULL CHECK (environment IN ('production', 'integration')),
    customer    text NOT NULL REFERENCES catalog.customers,
    cluster     text NOT NULL,
    -- provisioning -> ready; recreating/restoring while a recreate or restore runs
    -- (the recreates table says which step it reached).
    state       text NOT NULL CHECK (state IN ('provisioning', 'ready', 'recreating', 'restoring')),
    owner       text NOT NULL,
    adopted     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, name),
    UNIQUE (customer, environment)
);

-- Append-only: who did what, when, and how it ended.
CREATE TABLE catalog.events (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    command    text NOT NULL,
    database   text,
    step       text NOT NULL,
    outcome    text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
REVOKE UPDATE, DELETE, TRUNCATE ON catalog.events FROM PUBLIC;
