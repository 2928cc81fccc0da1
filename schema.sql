-- coupon-ledger schema. Applied idempotently at start-up and by `coupon-ledger migrate`.

-- The event store. The DDL matches eventsourcing's PostgreSQL recorder, whose own
-- CREATE TABLE IF NOT EXISTS then does nothing. The primary key is the optimistic
-- concurrency check: one writer per (coupon, version).
CREATE TABLE IF NOT EXISTS ledger_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_events_notification_id_idx ON ledger_events (notification_id ASC);

-- The row type the library's recorder inserts through (unnest of an array of these).
DO $$
BEGIN
    CREATE TYPE stored_event_uuid AS (originator_id uuid, originator_version bigint, topic text, state bytea);
EXCEPTION WHEN duplicate_object THEN NULL;
END;
$$;

-- The hash chain (ledger/served_events.py): every event's prev_hash and hash, and its stream's
-- owner (the retailer, and the code of the coupon the stream belongs to), written with it. Added
-- here rather than in the CREATE TABLE above so that a store from before takes the same path; its
-- events are chained once, at the next start (ledger/chain_migration.py). Guarded: a later start
-- takes no lock. The CHECK is NOT VALID: it binds every new event without reading the old ones.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = 'ledger_events'::regclass AND attname = 'hash'
    ) THEN
        ALTER TABLE ledger_events
            ADD COLUMN prev_hash bytea,
            ADD COLUMN hash bytea,
            ADD COLUMN retailer_id uuid,
            ADD COLUMN code text;
        -- A retailer's events in log order (its export, its digest).
        CREATE INDEX ledger_events_retailer_position ON ledger_events (retailer_id, notification_id);
        -- Events not chained yet: none once a store from before has been chained.
        CREATE INDEX ledger_events_unchained ON ledger_events (originator_id, originator_version) WHERE hash IS NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'ledger_events_chained') THEN
        ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_chained
            CHECK (hash IS NOT NULL AND prev_hash IS NOT NULL) NOT VALID;
    END IF;
END;
$$;

-- Append-only in the database itself: no UPDATE, DELETE or TRUNCATE of recorded events. The one
-- change allowed is linking an event recorded before the hash chain existed (its hash still NULL),
-- or naming the owner of a stream that had none, leaving what was recorded as it was.
CREATE OR REPLACE FUNCTION ledger_reject_event_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND NEW.originator_id = OLD.originator_id AND NEW.originator_version = OLD.originator_version
        AND NEW.topic IS NOT DISTINCT FROM OLD.topic AND NEW.state IS NOT DISTINCT FROM OLD.state
        AND NEW.notification_id = OLD.notification_id
        AND (OLD.hash IS NULL
             OR (OLD.retailer_id IS NULL AND NEW.hash = OLD.hash AND NEW.prev_hash = OLD.prev_hash))
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE OR REPLACE TRIGGER ledger_events_append_only
    BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_event_mutation();
CREATE OR REPLACE TRIGGER ledger_events_no_truncate
    BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_event_mutation();

-- Snapshots of aggregates with long histories (the library's snapshot store): a coupon is
-- read from its newest snapshot plus the events after it. Derived data, so not append-only.
CREATE TABLE IF NOT EXISTS ledger_snapshots (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    PRIMARY KEY (originator_id, originator_version)
);

-- The writer's save: a batch's events (with their links in the hash chain and their streams'
-- owners) and the snapshots it takes, in one statement, so one round trip and one implicit
-- transaction. It takes the same EXCLUSIVE lock and sends the same NOTIFY as the library's
-- recorder, which keeps notification ids in commit order for the projection's subscription
-- (unlike the library's own POSTGRES_ENABLE_DB_FUNCTIONS function, which takes no lock and is not
-- used). The form without links, from before the hash chain, is dropped: a save must link.
DROP FUNCTION IF EXISTS ledger_insert_events(uuid[], bigint[], text[], bytea[], uuid[], bigint[], text[], bytea[]);
CREATE OR REPLACE FUNCTION ledger_insert_events(
    ids uuid[], versions bigint[], topics text[], states bytea[],
    retailer_ids uuid[], codes text[], prev_hashes bytea[], hashes bytea[],
    snapshot_ids uuid[], snapshot_versions bigint[], snapshot_topics text[], snapshot_states bytea[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    NOTIFY ledger_events;
    IF cardinality(snapshot_ids) > 0 THEN
        INSERT INTO ledger_snapshots (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(snapshot_ids, snapshot_versions, snapshot_topics, snapshot_states);
    END IF;
    RETURN QUERY
        INSERT INTO ledger_events (originator_id, originator_version, topic, state, retailer_id, code, prev_hash, hash)
        SELECT * FROM unnest(ids, versions, topics, states, retailer_ids, codes, prev_hashes, hashes)
        RETURNING notification_id;
END;
$$;

-- The key that signs audit digests (api/signing.py): one per deployment, made at the first start.
CREATE TABLE IF NOT EXISTS audit_signing_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    private_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Tracking records of the coupons projection (the library's single-row layout; the
-- '__migration__' row tells the library this table needs no migration).
CREATE TABLE IF NOT EXISTS coupons_projection_tracking (
    application_name text,
    notification_id bigint,
    PRIMARY KEY (application_name)
);
INSERT INTO coupons_projection_tracking VALUES ('__migration__', 1) ON CONFLICT DO NOTHING;

-- Read model: one row per coupon (the seed's columns, code unique per retailer).
CREATE TABLE IF NOT EXISTS coupons (
    id uuid PRIMARY KEY,
    retailer_id uuid NOT NULL,
    code text NOT NULL,
    discount_type text NOT NULL CHECK (discount_type IN ('percentage', 'fixed', 'free_shipping')),
    discount_value numeric(14, 2) NOT NULL,
    min_order_value numeric(14, 2),
    expiry_date timestamptz,
    max_uses integer,
    uses_count integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL,
    created_at timestamptz NOT NULL,
    version bigint NOT NULL,
    UNIQUE (retailer_id, code)
);

-- The columns of the later coupon terms: the time window, per-customer limit, discount cap, scope, public flag,
-- campaign and archiving. Added here rather than in the CREATE TABLE above, so that a new
-- database and one from before take the same path; guarded, so that a later start takes no lock.
-- A database from before holds no coupon with any of these set (archived_at NULL: not archived).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = 'coupons'::regclass AND attname = 'archived_at'
    ) THEN
        ALTER TABLE coupons
            ADD COLUMN IF NOT EXISTS starts_at timestamptz,
            ADD COLUMN IF NOT EXISTS max_uses_per_customer integer,
            ADD COLUMN IF NOT EXISTS max_discount_amount numeric(14, 2),
            ADD COLUMN IF NOT EXISTS scope jsonb,
            ADD COLUMN IF NOT EXISTS public boolean NOT NULL DEFAULT false,
            ADD COLUMN IF NOT EXISTS campaign_id uuid,
            ADD COLUMN IF NOT EXISTS archived_at timestamptz;
        CREATE INDEX IF NOT EXISTS coupons_campaign_code ON coupons (campaign_id, code) WHERE campaign_id IS NOT NULL;
    END IF;
END;
$$;
-- The storefront's list (GET /v1/storefront/coupons): a retailer's public coupons in code order,
-- without walking its other coupons (a campaign's 100,000 codes are not public). Few coupons are
-- public, so the index is small. Guarded: CREATE INDEX IF NOT EXISTS would still lock the table.
DO $$
BEGIN
    IF to_regclass('coupons_public_code') IS NULL THEN
        CREATE INDEX coupons_public_code ON coupons (retailer_id, code) WHERE public AND archived_at IS NULL;
    END IF;
END;
$$;

-- The coupons list newest or oldest first (GET /v1/coupons?sort=created_at): a page reads the index
-- from its cursor. created_at never changes, so updates of a row's uses stay HOT. Guarded as above.
DO $$
BEGIN
    IF to_regclass('coupons_retailer_created') IS NULL THEN
        CREATE INDEX coupons_retailer_created ON coupons (retailer_id, created_at, code);
    END IF;
END;
$$;

-- Read model: one row per hold of a coupon use (a Reservation), written by the coupons
-- projection in the same transactions and under the same tracking record as the coupons rows.
-- Only holds still in status held are indexed (few at any time: each leaves the indexes when it is
-- confirmed, released or expired): by coupon, for the live holds in the coupons list's status; by
-- expiry, for the sweeper. Guarded, so that a later start takes no lock.
DO $$
BEGIN
    IF to_regclass('reservations') IS NULL THEN
        CREATE TABLE reservations (
            id uuid PRIMARY KEY,
            retailer_id uuid NOT NULL,
            coupon_id uuid NOT NULL,
            code text NOT NULL,
            customer_id text,
            campaign_id uuid,
            status text NOT NULL CHECK (status IN ('held', 'confirmed', 'released', 'expired')),
            discount_amount numeric(14, 2) NOT NULL,
            expires_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL,
            ended_at timestamptz,
            redemption_id uuid,
            version bigint NOT NULL
        );
        CREATE INDEX reservations_held_by_coupon ON reservations (coupon_id, expires_at) WHERE status = 'held';
        CREATE INDEX reservations_held_by_expiry ON reservations (expires_at, id) WHERE status = 'held';
    END IF;
END;
$$;

-- Retailers and their API keys (SHA-256 of the key; the key itself is shown once).
CREATE TABLE IF NOT EXISTS retailers (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Names are unique, compared without case and surrounding spaces. A database from before this
-- index may hold duplicates: the oldest retailer keeps the name, each later one is renamed to
-- "<name> (<its id>)" (keys and coupons hang on ids, never on names), so the index can be built.
DO $$
BEGIN
    IF to_regclass('retailers_name_unique') IS NULL THEN
        UPDATE retailers r SET name = r.name || ' (' || r.id || ')'
        FROM (
            SELECT id, row_number() OVER (PARTITION BY lower(btrim(name)) ORDER BY created_at, id) AS n
            FROM retailers
        ) d
        WHERE d.id = r.id AND d.n > 1;
    END IF;
END;
$$;
CREATE UNIQUE INDEX IF NOT EXISTS retailers_name_unique ON retailers (lower(btrim(name)));
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash text PRIMARY KEY,
    retailer_id uuid NOT NULL REFERENCES retailers (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- A key is a secret one (`cl_…`: every route) or a publishable one (`pk_…`, safe in a web
-- page: the storefront and checkout-session routes only). Added here rather than in the CREATE
-- TABLE above, so that a new database and one from before take the same path; a key from before is
-- a secret one (the default). Guarded, so that a later start takes no lock on api_keys.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = 'api_keys'::regclass AND attname = 'kind'
    ) THEN
        ALTER TABLE api_keys
            ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'secret'
                CONSTRAINT api_keys_kind CHECK (kind IN ('secret', 'publishable'));
    END IF;
END;
$$;
-- A key's history, and what people see of it (`coupon-ledger retailer keys`): its public id (the
-- start of its hash, the id events record as the actor; computed by the database, so keys from
-- before have it too), the start of the key itself to recognise it by (`cl_Ab3x`: 4 of its 43
-- random characters; NULL for keys made before it was kept), when it was last used (written by each
-- API process at most about once a minute per key) and when it was revoked (a revoked key stays,
-- as history; it no longer authenticates). Guarded like `kind`: a later start takes no lock.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = 'api_keys'::regclass AND attname = 'revoked_at'
    ) THEN
        ALTER TABLE api_keys
            ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
            ADD COLUMN IF NOT EXISTS key_id text GENERATED ALWAYS AS ('key_' || left(key_hash, 16)) STORED,
            ADD COLUMN IF NOT EXISTS prefix text,
            ADD COLUMN IF NOT EXISTS last_used_at timestamptz,
            ADD COLUMN IF NOT EXISTS revoked_at timestamptz;
    END IF;
    -- `retailer revoke NAME KEY_ID` finds a key by its id; `retailer keys NAME` lists a retailer's.
    IF to_regclass('api_keys_key_id') IS NULL THEN
        CREATE UNIQUE INDEX api_keys_key_id ON api_keys (key_id);
    END IF;
    IF to_regclass('api_keys_retailer_created') IS NULL THEN
        CREATE INDEX api_keys_retailer_created ON api_keys (retailer_id, created_at);
    END IF;
END;
$$;
-- Every API process caches the keys it has checked, and listens on this channel to forget one the
-- moment it stops being valid: revoked, deleted, or moved to another retailer or kind. The trigger
-- sends the key's id in the same transaction, so whatever revokes a key (the CLI, or SQL by hand)
-- reaches every listening process when it commits (api/key_listener.py).
CREATE OR REPLACE FUNCTION api_keys_notify_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.revoked_at IS DISTINCT FROM OLD.revoked_at OR NEW.key_hash <> OLD.key_hash
        OR NEW.retailer_id <> OLD.retailer_id OR NEW.kind <> OLD.kind
    THEN
        PERFORM pg_notify('api_key_revoked', OLD.key_id);
    END IF;
    RETURN NULL;
END;
$$;
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger WHERE tgrelid = 'api_keys'::regclass AND tgname = 'api_keys_revoked'
    ) THEN
        CREATE TRIGGER api_keys_revoked
            AFTER UPDATE OR DELETE ON api_keys  -- no column list: columns can still be dropped
            FOR EACH ROW EXECUTE FUNCTION api_keys_notify_revoked();
    END IF;
END;
$$;

-- The existing Cartly checkout, exactly as in the seed (each row's retailer_id is added below).
CREATE TABLE IF NOT EXISTS products (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    price numeric(14, 2) NOT NULL CHECK (price >= 0),
    stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    subtotal numeric(14, 2) NOT NULL,
    total numeric(14, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Coupons used at checkout, kept beside (not inside) the seed's orders table.
CREATE TABLE IF NOT EXISTS order_coupons (
    order_id bigint PRIMARY KEY REFERENCES orders (id),
    retailer_id uuid NOT NULL,
    coupon_code text NOT NULL,
    redemption_id uuid NOT NULL,
    discount_amount numeric(14, 2) NOT NULL
);

-- Products and orders belong to a retailer: the seed's columns stay as they are and
-- `retailer_id` is added beside them, here rather than in the CREATE TABLEs above, so that a new
-- database and one that already holds rows take the same path. Every query filters on it.
--
-- Rows that exist when the column is added are given an owner once, in that first run, only
-- where the owner is certain:
--   * an order with a coupon belongs to the retailer in its `order_coupons` row;
--   * if the database holds exactly one retailer, every other row is that retailer's (before
--     this change that retailer alone could list and sell them, so nothing becomes visible to
--     anyone new; a database that `serve` seeded with the demo retailer is this case);
--   * otherwise (several retailers, any of whom could sell any product, so which one created
--     it is not recorded; or none at all) the row keeps retailer_id NULL. Such a row is invisible to
--     every retailer (`retailer_id = $1` never matches NULL): not listed, not sellable, stock
--     untouched. Guessing an owner (the oldest retailer, the one named demo) could hand one
--     retailer's stock and orders to another; an operator who knows the owners assigns them
--     with an UPDATE.
-- The first run adds CHECK (retailer_id IS NOT NULL) NOT VALID: every new or changed row needs
-- an owner even while old ones lack one. The constraint also marks the migration as done, so it
-- never runs again (a retailer created later is not handed the orphans) and a later start takes
-- no lock on products or orders (ALTER TABLE would take an ACCESS EXCLUSIVE one even when there
-- is nothing to add). At any start at which no row lacks an owner (at once on a new or
-- single-retailer database; after the operator's UPDATE otherwise), the check is validated and
-- the column becomes NOT NULL.
-- The unique (retailer_id, id) indexes serve a retailer's products in id order (GET
-- /v1/products) and its orders, and let order_coupons reference (order_id, retailer_id): an
-- order's coupon row names the order's own retailer.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'products'::regclass AND conname = 'products_retailer_id_required'
    ) THEN
        ALTER TABLE products ADD COLUMN IF NOT EXISTS retailer_id uuid REFERENCES retailers (id);
        UPDATE products SET retailer_id = (SELECT id FROM retailers)
            WHERE retailer_id IS NULL AND (SELECT count(*) FROM retailers) = 1;
        ALTER TABLE products ADD CONSTRAINT products_retailer_id_required CHECK (retailer_id IS NOT NULL) NOT VALID;
        CREATE UNIQUE INDEX IF NOT EXISTS products_retailer_id_id ON products (retailer_id, id);
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'orders'::regclass AND conname = 'orders_retailer_id_required'
    ) THEN
        ALTER TABLE orders ADD COLUMN IF NOT EXISTS retailer_id uuid REFERENCES retailers (id);
        UPDATE orders SET retailer_id = oc.retailer_id
            FROM order_coupons oc WHERE oc.order_id = orders.id AND orders.retailer_id IS NULL;
        UPDATE orders SET retailer_id = (SELECT id FROM retailers)
            WHERE retailer_id IS NULL AND (SELECT count(*) FROM retailers) = 1;
        ALTER TABLE orders ADD CONSTRAINT orders_retailer_id_required CHECK (retailer_id IS NOT NULL) NOT VALID;
        CREATE UNIQUE INDEX IF NOT EXISTS orders_retailer_id_id ON orders (retailer_id, id);
        ALTER TABLE order_coupons ADD CONSTRAINT order_coupons_order_retailer
            FOREIGN KEY (order_id, retailer_id) REFERENCES orders (id, retailer_id);
    END IF;
    IF NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'products'::regclass AND attname = 'retailer_id')
        AND NOT EXISTS (SELECT 1 FROM products WHERE retailer_id IS NULL) THEN
        ALTER TABLE products VALIDATE CONSTRAINT products_retailer_id_required;
        ALTER TABLE products ALTER COLUMN retailer_id SET NOT NULL;
    END IF;
    IF NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'retailer_id')
        AND NOT EXISTS (SELECT 1 FROM orders WHERE retailer_id IS NULL) THEN
        ALTER TABLE orders VALIDATE CONSTRAINT orders_retailer_id_required;
        ALTER TABLE orders ALTER COLUMN retailer_id SET NOT NULL;
    END IF;
END;
$$;

-- Idempotency-Key of the HTTP routes whose keys are not kept in the ledger (apply's and
-- reserve's are): POST /v1/checkout, the checkout-session calls, confirm and release. One row per
-- (retailer, key), kept for good. A request claims its key (claim, lease_until), runs, and then
-- stores its response (status and body) in place of the claim; an error response frees the key
-- (the row is deleted); a claim whose lease has passed (its process died) is taken over. The
-- fingerprint is the request's: method, path and body (see api/idempotency.py).
CREATE TABLE IF NOT EXISTS idempotency_keys (
    retailer_id uuid NOT NULL REFERENCES retailers (id),
    key text NOT NULL,
    fingerprint text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    claim uuid,
    lease_until timestamptz,
    response_status smallint,
    response_body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (retailer_id, key),
    CONSTRAINT idempotency_keys_claimed_or_answered CHECK (
        (claim IS NOT NULL AND lease_until IS NOT NULL AND response_status IS NULL)
        OR (claim IS NULL AND response_status IS NOT NULL AND response_body IS NOT NULL)
    )
);

-- Checkout sessions (seed 004's cart-summary): a cart priced by the server from `products`, a
-- coupon held for the session (a ledger reservation) and, in inventory_holds, stock held for it.
-- `items` are the lines as priced at the last sync: [{product_id, name, quantity, unit_price}].
-- A session is open until expires_at (its coupon hold ends then too), or completed with its order.
-- `version` is the optimistic check of every change made in the ledger writer's transaction.
CREATE TABLE IF NOT EXISTS checkout_sessions (
    retailer_id uuid NOT NULL REFERENCES retailers (id),
    id text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,100}$'),
    items jsonb NOT NULL,
    subtotal numeric(14, 2) NOT NULL,
    coupon_code text,
    customer_id text,
    reservation_id uuid,
    discount_amount numeric(14, 2),
    free_shipping boolean,
    status text NOT NULL CHECK (status IN ('open', 'expired', 'completed')),
    order_id bigint,
    version bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (retailer_id, id),
    FOREIGN KEY (order_id, retailer_id) REFERENCES orders (id, retailer_id),
    CHECK ((status = 'completed') = (order_id IS NOT NULL)),
    CHECK ((coupon_code IS NULL) = (reservation_id IS NULL))
);
CREATE INDEX IF NOT EXISTS checkout_sessions_open_expiry ON checkout_sessions (expires_at) WHERE status = 'open';
-- The session an order was placed from (GET /v1/orders/{id} shows its lines).
CREATE INDEX IF NOT EXISTS checkout_sessions_order ON checkout_sessions (retailer_id, order_id) WHERE order_id IS NOT NULL;
-- A session is sealed: `client_secret_hash` is the SHA-256 (hex) of the client secret given to
-- its creator, which a publishable-key caller must send to open it (NULL: a session from before
-- the seal, opened by secret keys only). `holder_address` is the client address of the
-- publishable-key caller that created it or last held a coupon or stock for it: such holds are
-- capped per address (and per customer_id), counted over the open sessions that hold something.
-- Guarded, like the coupons' columns above: a later start takes no lock.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = 'checkout_sessions'::regclass AND attname = 'holder_address'
    ) THEN
        ALTER TABLE checkout_sessions
            ADD COLUMN IF NOT EXISTS client_secret_hash text,
            ADD COLUMN IF NOT EXISTS holder_address text;
        CREATE INDEX IF NOT EXISTS checkout_sessions_holder_address
            ON checkout_sessions (retailer_id, holder_address) WHERE status = 'open' AND holder_address IS NOT NULL;
        CREATE INDEX IF NOT EXISTS checkout_sessions_held_for_customer
            ON checkout_sessions (retailer_id, customer_id) WHERE status = 'open' AND reservation_id IS NOT NULL;
    END IF;
END;
$$;

-- Stock held for a session: one row per (session, product). A hold counts against the product's
-- available stock (stock - live holds of other sessions) while it and its session are live.
CREATE TABLE IF NOT EXISTS inventory_holds (
    retailer_id uuid NOT NULL,
    session_id text NOT NULL,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (retailer_id, session_id, product_id),
    FOREIGN KEY (retailer_id, session_id) REFERENCES checkout_sessions (retailer_id, id)
);
CREATE INDEX IF NOT EXISTS inventory_holds_product ON inventory_holds (product_id, expires_at);

-- The brute-force limit on failed code lookups (api/throttle.py): one row per budget key (the
-- API key's hash and the shopper), holding the rate-limit algorithm's few numbers (GCRA: one
-- theoretical arrival time, in microseconds), written by whichever process counts a failure.
-- A row idle for longer than the window is back to its initial state and may be deleted.
CREATE TABLE IF NOT EXISTS rate_limit_state (
    key text PRIMARY KEY,
    state text[] NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_limit_state_updated_at ON rate_limit_state (updated_at);

-- Campaign codes each retailer generated per UTC day of the database's clock: a campaign that
-- would take the day past COUPON_LEDGER_MAX_CODES_PER_DAY is refused before any code is made
-- (api/campaign_quota.py). Charged in the transaction that starts the campaign, so every process
-- counts against the same row and a campaign that never started is never counted.
CREATE TABLE IF NOT EXISTS campaign_codes_daily (
    retailer_id uuid NOT NULL REFERENCES retailers (id),
    day date NOT NULL,
    codes bigint NOT NULL CHECK (codes >= 0),
    PRIMARY KEY (retailer_id, day)
);

-- Read model: one row per campaign, for GET /v1/campaigns (newest first). Projected from
-- Campaign.Created with the coupons (projections/campaigns.py); the campaign itself is read from
-- the ledger. Created once: campaigns started before it are listed from their coupons, with the
-- first coupon's time (a campaign that had made no code yet appears after a rebuild).
DO $$
BEGIN
    IF to_regclass('campaigns') IS NULL THEN
        CREATE TABLE campaigns (
            id uuid PRIMARY KEY,
            retailer_id uuid NOT NULL,
            created_at timestamptz NOT NULL
        );
        INSERT INTO campaigns (id, retailer_id, created_at)
            SELECT campaign_id, min(retailer_id::text)::uuid, min(created_at)
            FROM coupons WHERE campaign_id IS NOT NULL GROUP BY campaign_id;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS campaigns_by_retailer ON campaigns (retailer_id, created_at DESC, id DESC);

-- Read model: one row per use of a coupon (a Redemption: apply, confirm of a hold, checkout), with
-- its reversal; and its figures per coupon and 15 minutes of UTC (every time zone's offset is a
-- multiple of 15 minutes, so any zone's local days are sums of buckets). Written by the coupons
-- projection in the same transactions and under the same tracking record as the coupons rows
-- (projections/redemptions.py). Created once, guarded, so that a later start takes no lock; new
-- tables, so creating them locks nothing else. On a database whose projection had already
-- processed events, the tables start empty and the projection fills them from the first event
-- before it goes on (`read_model_backfills`).
CREATE TABLE IF NOT EXISTS read_model_backfills (
    name text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
DO $$
BEGIN
    IF to_regclass('redemptions') IS NULL THEN
        CREATE TABLE redemptions (
            id uuid PRIMARY KEY,
            retailer_id uuid NOT NULL,
            coupon_id uuid NOT NULL,
            code text NOT NULL,
            campaign_id uuid,
            customer_id text,
            order_id text,
            occurred_at timestamptz NOT NULL,
            original_subtotal numeric(14, 2) NOT NULL,
            discount_amount numeric(14, 2) NOT NULL,
            final_total numeric(14, 2) NOT NULL,
            reversed_at timestamptz
        );
        -- GET /v1/redemptions in (occurred_at, id) order: the retailer's, one coupon's (its
        -- code names it), one campaign's, one customer's.
        CREATE INDEX redemptions_by_retailer ON redemptions (retailer_id, occurred_at, id);
        CREATE INDEX redemptions_by_coupon ON redemptions (coupon_id, occurred_at, id);
        CREATE INDEX redemptions_by_campaign ON redemptions (campaign_id, occurred_at, id)
            WHERE campaign_id IS NOT NULL;
        CREATE INDEX redemptions_by_customer ON redemptions (retailer_id, customer_id, occurred_at, id)
            WHERE customer_id IS NOT NULL;
        CREATE TABLE redemption_buckets (
            retailer_id uuid NOT NULL,
            bucket_start timestamptz NOT NULL,
            coupon_id uuid NOT NULL,
            code text NOT NULL,
            campaign_id uuid,
            redemptions bigint NOT NULL,
            reversals bigint NOT NULL,
            discount_total numeric(20, 2) NOT NULL,
            revenue_total numeric(20, 2) NOT NULL,
            PRIMARY KEY (retailer_id, bucket_start, coupon_id)
        );
        IF EXISTS (
            SELECT 1 FROM coupons_projection_tracking WHERE application_name <> '__migration__'
        ) THEN
            INSERT INTO read_model_backfills (name) VALUES ('redemptions') ON CONFLICT DO NOTHING;
        END IF;
    END IF;
END;
$$;

-- Webhooks (projections/webhooks/). A retailer's endpoints; the secret is kept as it was made,
-- not hashed: the server signs every delivery with it (HMAC needs the key itself). An endpoint
-- gets the events after the log position it was created at (from_position), until it is deleted
-- (disabled_at): none from before it existed, however far behind the projection is.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id uuid PRIMARY KEY,
    retailer_id uuid NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    description text,
    secret text NOT NULL,
    created_at timestamptz NOT NULL,
    disabled_at timestamptz,
    from_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_by_retailer ON webhook_endpoints (retailer_id, created_at, id);

-- Tracking records of the webhooks projection (the library's single-row layout, like the coupons').
CREATE TABLE IF NOT EXISTS webhooks_projection_tracking (
    application_name text,
    notification_id bigint,
    PRIMARY KEY (application_name)
);
INSERT INTO webhooks_projection_tracking VALUES ('__migration__', 1) ON CONFLICT DO NOTHING;

-- What the webhooks projection needs to know of a coupon and a campaign to tell when a use
-- exhausts it; written by it alone, under its own tracking record.
CREATE TABLE IF NOT EXISTS webhook_coupon_state (
    coupon_id uuid PRIMARY KEY,
    retailer_id uuid NOT NULL,
    code text NOT NULL,
    campaign_id uuid,
    max_uses integer,
    uses integer NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_campaign_state (
    campaign_id uuid PRIMARY KEY,
    retailer_id uuid NOT NULL,
    name text NOT NULL,
    max_redemptions integer,
    max_discount_total numeric,
    redemptions integer NOT NULL,
    discount_total numeric NOT NULL
);

-- The outbox: one row per (endpoint, webhook event), made by the webhooks projection in the
-- transaction of its tracking record; (endpoint_id, event_id) is unique, so projecting the same
-- events again makes no second row. subject_id is the coupon (or campaign) the event is about:
-- an endpoint's deliveries of one subject go out in log order (position, ordinal).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id),
    retailer_id uuid NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    subject_id uuid NOT NULL,
    position bigint NOT NULL,
    ordinal smallint NOT NULL,
    payload text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error text,
    next_attempt_at timestamptz,
    retry_from timestamptz NOT NULL, -- made or queued again: retried for a window from then
    created_at timestamptz NOT NULL,
    delivered_at timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_in_order
    ON webhook_deliveries (endpoint_id, subject_id, position, ordinal) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_retailer ON webhook_deliveries (retailer_id, position, ordinal, id);
