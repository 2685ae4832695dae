-- The mirror of each workspace's Stripe data: customers, subscriptions (with their items and
-- prices), the catalog (products, prices), invoices, charges, refunds and payment methods
-- (type, brand and last 4 only). Reads answer from here; writes go to Stripe and land here.
CREATE TABLE stripe_objects (
    workspace_id text NOT NULL,
    -- Stripe's object name: customer, subscription, product, price, invoice, charge, refund,
    -- payment_method.
    object_type text NOT NULL,
    object_id text NOT NULL,
    -- The customer it belongs to ('' for the catalog).
    customer_id text NOT NULL DEFAULT '',
    -- The object's own `created` (Unix seconds): lists are newest first and filter on it.
    created bigint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT '',
    -- The object as Stripe returned it (expanded payment methods replaced by their ids).
    data jsonb NOT NULL,
    -- Stripe's time (Unix seconds) of the version held: the event's `created`, or the Date of
    -- the response it was read in, or the object's own latest timestamp, whichever is later.
    -- A version with a later time replaces it, an earlier one never does.
    version_time bigint NOT NULL,
    -- Where the version came from: event:<id>, refetch, read, write, backfill.
    version_source text NOT NULL,
    -- Deleted at Stripe (customer, product, price): kept so an older event cannot revive it.
    deleted boolean NOT NULL DEFAULT false,
    -- When Stripe last confirmed this version (an event, a read, a write or the backfill).
    confirmed_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, object_type, object_id)
);

CREATE INDEX stripe_objects_by_customer
    ON stripe_objects (workspace_id, object_type, customer_id, created DESC, object_id DESC);

-- The backfill of one Stripe list per workspace, resumable from its cursor.
CREATE TABLE mirror_backfills (
    workspace_id text NOT NULL,
    -- The Stripe list: products, prices, customers, subscriptions, invoices, charges, refunds.
    object_type text NOT NULL,
    -- The last object id copied (Stripe's starting_after); '' before the first page.
    cursor text NOT NULL DEFAULT '',
    done boolean NOT NULL DEFAULT false,
    objects_copied bigint NOT NULL DEFAULT 0,
    pages_copied integer NOT NULL DEFAULT 0,
    started_at timestamptz,
    finished_at timestamptz,
    last_error text NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, object_type)
);

CREATE INDEX mirror_backfills_due ON mirror_backfills (next_attempt_at) WHERE NOT done;

-- Per workspace: the freshness bound, and how far the catch-up through Stripe's events list
-- has come.
CREATE TABLE mirror_workspaces (
    workspace_id text PRIMARY KEY,
    -- Reads answer from the mirror while its data was confirmed within this many seconds;
    -- NULL: the service default (MIRROR_MAX_AGE_SECONDS).
    max_age_seconds integer,
    -- Every event Stripe listed with `created` up to here (Unix seconds) is in the inbox.
    caught_up_to bigint,
    -- When the account was connected (Unix seconds): events before it were never meant for
    -- the gateway (the backfill copied the state they led to), so no catch-up goes back
    -- further.
    connected_at bigint,
    -- When the catch-up worker looks at this workspace again.
    next_catch_up_at timestamptz NOT NULL DEFAULT now()
);

-- FindCustomers from the mirror: by email (case-insensitive) and by a metadata value.
CREATE INDEX stripe_customers_by_email
    ON stripe_objects (workspace_id, lower(data->>'email')) WHERE object_type = 'customer';
CREATE INDEX stripe_customers_by_metadata
    ON stripe_objects USING gin ((data->'metadata') jsonb_path_ops) WHERE object_type = 'customer';

-- Accounts connected before the mirror existed: backfilled and caught up from now on, as if
-- connected now (until their backfill is done, their reads go to Stripe as before).
INSERT INTO mirror_workspaces (workspace_id, caught_up_to, connected_at)
SELECT workspace_id, extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint
FROM accounts;
INSERT INTO mirror_backfills (workspace_id, object_type)
SELECT workspace_id, object_type
FROM accounts,
     unnest(ARRAY['products', 'prices', 'customers', 'subscriptions', 'invoices', 'charges',
                  'refunds']) AS object_type;

-- The service role's row access to the new tables (0004_service_role.sql granted the tables
-- that existed then).
GRANT SELECT, INSERT, UPDATE, DELETE ON stripe_objects, mirror_backfills, mirror_workspaces
    TO askvault_billing_gateway_service;
