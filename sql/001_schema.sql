-- orderflowd schema, migration 001.
--
-- Applied by `orderflowd --migrate` inside a single transaction: no BEGIN/COMMIT
-- here and nothing that cannot run in a transaction block (no CREATE INDEX
-- CONCURRENTLY). Plain PostgreSQL 15, no extensions (gen_random_uuid() is core
-- since 13).
--
-- Tenancy: every row a creator owns carries user_id (= creators.id) and every
-- query is scoped by it. Child tables reference their parent through
-- (parent_id, user_id), so a row can never point at another creator's order,
-- shop or stock item even if application code gets the ids wrong.

-- ---------------------------------------------------------------------------
-- Enums
-- ---------------------------------------------------------------------------

CREATE TYPE order_status AS ENUM (
    'pending', 'confirmed', 'processing', 'shipped', 'delivered', 'cancelled', 'returned'
);

CREATE TYPE workflow_status AS ENUM (
    'new', 'validated', 'inventory_reserved', 'ready_to_ship', 'shipped', 'completed', 'failed'
);

CREATE TYPE payment_status AS ENUM (
    'pending', 'paid', 'failed', 'refunded', 'partially_refunded'
);

CREATE TYPE fulfillment_status AS ENUM (
    'pending', 'reserved', 'picked', 'packed', 'shipped', 'delivered', 'cancelled'
);

CREATE TYPE workflow_execution_status AS ENUM (
    'running', 'completed', 'failed', 'paused', 'cancelled'
);

CREATE TYPE shop_status AS ENUM (
    'active', 'paused', 'deauthorized'
);

-- ---------------------------------------------------------------------------
-- updated_at maintenance
-- ---------------------------------------------------------------------------

-- Set in the database rather than by each UPDATE statement so no code path can
-- forget it (the dashboard sorts by updated_at). now() is the transaction start
-- time, so all rows touched by one transaction share one timestamp.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------
-- creators
-- ---------------------------------------------------------------------------

CREATE TABLE creators (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email        text        NOT NULL UNIQUE
                             CHECK (char_length(email) <= 320 AND position('@' IN email) > 1),
    display_name text        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 255),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE creators IS 'Tenants: TikTok Shop sellers using orderflow; creators.id is the user_id on every owned row.';

-- ---------------------------------------------------------------------------
-- shops
-- ---------------------------------------------------------------------------

CREATE TABLE shops (
    id                      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    creator_id              uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    tiktok_shop_id          text        NOT NULL UNIQUE,
    shop_cipher             text,
    shop_name               text,
    app_key                 text        NOT NULL,
    app_secret              text        NOT NULL,
    access_token            text,
    access_token_expires_at timestamptz,
    status                  shop_status NOT NULL DEFAULT 'active',
    paused_reason           text,
    -- Polling reconciliation resumes from here (TikTok update_time of the last
    -- order seen), so a restart neither re-reads everything nor skips a gap.
    sync_cursor             timestamptz,
    last_sync_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- Target of the (shop_id, user_id) foreign key from orders.
    UNIQUE (id, creator_id)
);
COMMENT ON TABLE shops IS 'TikTok shops authorised by a creator: app credentials, access token, sync cursor.';

CREATE INDEX shops_creator_id_idx ON shops (creator_id);

-- ---------------------------------------------------------------------------
-- orders
-- ---------------------------------------------------------------------------

CREATE TABLE orders (
    id                    uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id               uuid           NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    shop_id               uuid,
    -- TikTok order ids are globally unique, hence not scoped by user_id.
    tiktok_order_id       text           NOT NULL UNIQUE CHECK (char_length(tiktok_order_id) BETWEEN 1 AND 255),

    -- Order details
    order_number          text           NOT NULL CHECK (char_length(order_number) BETWEEN 1 AND 100),
    order_status          order_status   NOT NULL DEFAULT 'pending',
    workflow_status       workflow_status NOT NULL DEFAULT 'new',
    -- Raw TikTok status (UNPAID, AWAITING_SHIPMENT, ...): order_status is our
    -- mapping of it, kept so a mapping change can be replayed from data.
    tiktok_status         text,
    -- update_time of the last TikTok change applied to this row. Webhooks and
    -- polling arrive out of order; a change is applied only if it is newer, so
    -- a late event never moves an order back.
    tiktok_update_time    timestamptz,

    -- Financial information (NUMERIC(12,2): (10,2) caps at 99,999,999.99,
    -- too tight for currencies such as IDR or VND)
    subtotal              numeric(12,2)  CHECK (subtotal >= 0),
    tax                   numeric(12,2)  CHECK (tax >= 0),
    total_amount          numeric(12,2)  NOT NULL CHECK (total_amount >= 0),
    currency              text           NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    payment_status        payment_status NOT NULL DEFAULT 'pending',

    -- Customer information
    customer_name         text           NOT NULL CHECK (char_length(customer_name) <= 255),
    customer_email        text           CHECK (char_length(customer_email) <= 255),
    customer_phone        text           CHECK (char_length(customer_phone) <= 50),

    -- Shipping information
    shipping_address      jsonb          NOT NULL CHECK (jsonb_typeof(shipping_address) = 'object'),
    shipping_method       text           CHECK (char_length(shipping_method) <= 100),
    shipping_cost         numeric(12,2)  CHECK (shipping_cost >= 0),

    -- Timestamps
    order_date            timestamptz    NOT NULL,
    expected_ship_date    timestamptz,
    shipped_date          timestamptz,
    delivered_date        timestamptz,

    -- TikTok SLA deadlines (drive prioritisation and at-risk alerts)
    rts_sla_time          timestamptz,
    shipping_due_time     timestamptz,
    collection_due_time   timestamptz,
    delivery_sla_time     timestamptz,
    cancel_order_sla_time timestamptz,
    is_on_hold            boolean        NOT NULL DEFAULT false,
    buyer_request_cancel  boolean        NOT NULL DEFAULT false,

    -- Metadata
    order_source          text           NOT NULL DEFAULT 'tiktok_shop' CHECK (char_length(order_source) <= 50),
    priority_level        integer        NOT NULL DEFAULT 1 CHECK (priority_level BETWEEN 1 AND 10),
    tags                  text[]         NOT NULL DEFAULT '{}',
    notes                 text,

    -- Sync information
    last_tiktok_sync      timestamptz,
    sync_status           text           NOT NULL DEFAULT 'pending' CHECK (char_length(sync_status) <= 50),
    sync_attempts         integer        NOT NULL DEFAULT 0 CHECK (sync_attempts >= 0),

    -- Audit
    created_at            timestamptz    NOT NULL DEFAULT now(),
    updated_at            timestamptz    NOT NULL DEFAULT now(),
    -- Optimistic locking: writers do UPDATE ... SET version = version + 1
    -- WHERE id = $1 AND version = $2 and treat 0 rows as a conflict.
    version               integer        NOT NULL DEFAULT 1 CHECK (version >= 1),

    -- Target of the (order_id, user_id) foreign keys from child tables.
    UNIQUE (id, user_id),
    -- The shop must belong to the same creator. If the shop row is deleted the
    -- order stays and only shop_id is cleared (PG15 column-list SET NULL;
    -- user_id is NOT NULL and must not be touched).
    FOREIGN KEY (shop_id, user_id) REFERENCES shops (id, creator_id)
        ON DELETE SET NULL (shop_id)
);
COMMENT ON TABLE orders IS 'One row per TikTok order, owned by a creator; order_status mirrors TikTok, workflow_status is our fulfilment pipeline.';

-- Dashboard lists: always scoped by user_id, id is the tie-breaker so keyset
-- pagination is stable. Ascending sorts use the same indexes scanned backwards.
CREATE INDEX orders_user_order_date_idx   ON orders (user_id, order_date DESC, id DESC);
CREATE INDEX orders_user_status_date_idx  ON orders (user_id, order_status, order_date DESC, id DESC);
CREATE INDEX orders_user_wf_date_idx      ON orders (user_id, workflow_status, order_date DESC, id DESC);
CREATE INDEX orders_user_updated_idx      ON orders (user_id, updated_at DESC, id DESC);
CREATE INDEX orders_user_total_idx        ON orders (user_id, total_amount DESC, id DESC);

-- Case-insensitive prefix search. text_pattern_ops because the database
-- collation is usually not C, and a plain btree cannot serve LIKE 'abc%' then.
-- Queries must use the same expression: lower(col) LIKE lower($n) || '%'
-- (with %, _ and \ in the user's input escaped).
CREATE INDEX orders_user_number_search_idx ON orders (user_id, lower(order_number) text_pattern_ops);
CREATE INDEX orders_user_tiktok_search_idx ON orders (user_id, lower(tiktok_order_id) text_pattern_ops);
CREATE INDEX orders_user_name_search_idx   ON orders (user_id, lower(customer_name) text_pattern_ops);
CREATE INDEX orders_user_email_search_idx  ON orders (user_id, lower(customer_email) text_pattern_ops);

-- Health check "lastProcessedOrder": newest updated_at across all tenants.
CREATE INDEX orders_updated_at_idx ON orders (updated_at DESC);

-- ---------------------------------------------------------------------------
-- order_items
-- ---------------------------------------------------------------------------

CREATE TABLE order_items (
    id                   uuid               PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id             uuid               NOT NULL,
    user_id              uuid               NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    -- There is no products table: products live in TikTok, we keep their ids.
    tiktok_product_id    text               NOT NULL CHECK (char_length(tiktok_product_id) <= 255),
    -- NOT NULL so UNIQUE (order_id, sku_id) actually folds lines (NULLs would
    -- never collide).
    sku_id               text               NOT NULL,
    seller_sku           text,

    -- Product details
    product_name         text               NOT NULL CHECK (char_length(product_name) <= 255),
    product_sku          text               NOT NULL CHECK (char_length(product_sku) <= 100),
    variant_name         text               CHECK (char_length(variant_name) <= 255),

    -- Quantity and pricing
    quantity             integer            NOT NULL CHECK (quantity > 0),
    unit_price           numeric(12,2)      NOT NULL CHECK (unit_price >= 0),
    total_price          numeric(12,2)      NOT NULL CHECK (total_price >= 0),

    -- Fulfilment
    fulfillment_status   fulfillment_status NOT NULL DEFAULT 'pending',
    shipped_quantity     integer            NOT NULL DEFAULT 0
                                            CHECK (shipped_quantity >= 0 AND shipped_quantity <= quantity),

    -- TikTok returns one line item per unit; we fold them into one row per SKU
    -- and keep the original line item ids here (needed for per-line calls such
    -- as cancellations and package splits).
    tiktok_line_item_ids text[]             NOT NULL DEFAULT '{}',

    created_at           timestamptz        NOT NULL DEFAULT now(),
    updated_at           timestamptz        NOT NULL DEFAULT now(),

    -- Also serves as the index on order_id (leading column).
    UNIQUE (order_id, sku_id),
    FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id) ON DELETE CASCADE
);
COMMENT ON TABLE order_items IS 'Order lines, one row per SKU per order (TikTok per-unit lines folded).';

-- ---------------------------------------------------------------------------
-- order_workflows
-- ---------------------------------------------------------------------------

CREATE TABLE order_workflows (
    id              uuid                      PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id        uuid                      NOT NULL,
    user_id         uuid                      NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    workflow_name   text                      NOT NULL CHECK (char_length(workflow_name) <= 100),

    -- Workflow state
    current_step    text                      NOT NULL CHECK (char_length(current_step) <= 100),
    workflow_status workflow_execution_status NOT NULL DEFAULT 'running',

    -- Execution details
    started_at      timestamptz               NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    failed_at       timestamptz,

    -- Configuration
    workflow_config jsonb,
    step_history    jsonb                     NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(step_history) = 'array'),

    -- Error handling
    error_count     integer                   NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    last_error      text,
    retry_after     timestamptz,

    -- Lease: the engine instance working on this row; another instance may take
    -- it over once lease_until has passed (crashed or partitioned worker).
    lease_owner     text,
    lease_until     timestamptz,

    created_at      timestamptz               NOT NULL DEFAULT now(),
    updated_at      timestamptz               NOT NULL DEFAULT now(),

    FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id) ON DELETE CASCADE
);
COMMENT ON TABLE order_workflows IS 'Workflow executions per order: current step, step history, retries and the engine lease.';

CREATE INDEX order_workflows_order_id_idx ON order_workflows (order_id);

-- At most one running instance of a given workflow per order, so two engine
-- instances (or a webhook racing the poller) cannot both start it.
CREATE UNIQUE INDEX order_workflows_one_running_idx
    ON order_workflows (order_id, workflow_name)
    WHERE workflow_status = 'running';

-- The engine's work queue (running workflows due for a step) and the health
-- check's pendingWorkflows count both read only running rows.
CREATE INDEX order_workflows_runnable_idx
    ON order_workflows (retry_after)
    WHERE workflow_status = 'running';

-- ---------------------------------------------------------------------------
-- order_status_history
-- ---------------------------------------------------------------------------

CREATE TABLE order_status_history (
    id              uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id        uuid         NOT NULL,
    user_id         uuid         NOT NULL REFERENCES creators (id) ON DELETE CASCADE,

    -- Status change
    previous_status order_status,
    new_status      order_status NOT NULL,
    status_reason   text         CHECK (char_length(status_reason) <= 255),

    -- Change details
    changed_by      uuid         REFERENCES creators (id) ON DELETE SET NULL,
    change_source   text         NOT NULL DEFAULT 'system'
                                 CHECK (change_source IN ('system', 'user', 'tiktok_shop')),

    -- Metadata
    metadata        jsonb,
    created_at      timestamptz  NOT NULL DEFAULT now(),

    FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id) ON DELETE CASCADE
);
COMMENT ON TABLE order_status_history IS 'Append-only log of order_status transitions with who/what caused them.';

CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, created_at DESC);

-- ---------------------------------------------------------------------------
-- audit_log
-- ---------------------------------------------------------------------------

CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- SET NULL, not CASCADE: the audit trail outlives the account it describes.
    user_id     uuid        REFERENCES creators (id) ON DELETE SET NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    entity_type text        NOT NULL,
    -- text, not uuid: entities include TikTok ids and bigint-keyed rows.
    entity_id   text        NOT NULL,
    before      jsonb,
    after       jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit_log IS 'Append-only record of every state-changing action (actor, entity, before/after).';

CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id, created_at DESC);

-- ---------------------------------------------------------------------------
-- webhook_events (durable inbox)
-- ---------------------------------------------------------------------------

-- Webhooks are stored first and acknowledged, then processed asynchronously, so
-- a slow or failing processor never makes TikTok retry or drop notifications.
CREATE TABLE webhook_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text        NOT NULL DEFAULT 'tiktok_shop',
    -- TikTok's tts_notification_id; absent on some payloads.
    notification_id text,
    -- notification_id when present, else a key built from shop/type/order/
    -- update_time/status. TikTok delivers at least once: the UNIQUE below makes
    -- redeliveries an INSERT ... ON CONFLICT DO NOTHING.
    dedupe_key      text        NOT NULL,
    shop_id         uuid        REFERENCES shops (id) ON DELETE SET NULL,
    tiktok_shop_id  text,
    event_type      integer     NOT NULL,
    order_id        text,                       -- TikTok order id, not orders.id
    raw_body        text        NOT NULL,       -- verbatim, so events can be replayed
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    next_attempt_at timestamptz,
    -- Lease taken by the processor (claimed with FOR UPDATE SKIP LOCKED).
    lease_owner     text,
    lease_until     timestamptz,
    -- Set when retries are exhausted: a dead letter, kept for inspection/replay.
    dead_at         timestamptz,

    UNIQUE (source, dedupe_key)
);
COMMENT ON TABLE webhook_events IS 'Durable inbox of received webhooks: deduplicated, leased, retried, dead-lettered.';

-- Pending queue: small however large the table grows; serves claiming in
-- arrival order and the health check's depth / oldest age.
CREATE INDEX webhook_events_pending_idx
    ON webhook_events (received_at)
    WHERE processed_at IS NULL AND dead_at IS NULL;

CREATE INDEX webhook_events_dead_idx
    ON webhook_events (dead_at DESC)
    WHERE dead_at IS NOT NULL;

-- ---------------------------------------------------------------------------
-- inventory_items
-- ---------------------------------------------------------------------------

CREATE TABLE inventory_items (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    sku          text        NOT NULL,
    product_name text,
    on_hand      integer     NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved     integer     NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Reservation is one conditional UPDATE
    --   SET reserved = reserved + $q WHERE id = $1 AND reserved + $q <= on_hand
    -- (0 rows = out of stock); this CHECK is the backstop, so two orders can
    -- never both take the last unit whatever the code does.
    CONSTRAINT inventory_items_reserved_le_on_hand CHECK (reserved <= on_hand),
    UNIQUE (user_id, sku),
    -- Target of the (inventory_item_id, user_id) foreign key from reservations.
    UNIQUE (id, user_id)
);
COMMENT ON TABLE inventory_items IS 'Per-creator stock by SKU: units on hand and units reserved for open orders.';

-- ---------------------------------------------------------------------------
-- inventory_reservations
-- ---------------------------------------------------------------------------

CREATE TABLE inventory_reservations (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    order_id          uuid        NOT NULL,
    inventory_item_id uuid        NOT NULL,
    quantity          integer     NOT NULL CHECK (quantity > 0),
    status            text        NOT NULL DEFAULT 'active'
                                  CHECK (status IN ('active', 'released', 'consumed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    released_at       timestamptz,

    -- One reservation per order and stock item: re-running the reserve step is
    -- idempotent (ON CONFLICT DO NOTHING). Also serves as the index on order_id.
    UNIQUE (order_id, inventory_item_id),
    FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (inventory_item_id, user_id) REFERENCES inventory_items (id, user_id)
);
COMMENT ON TABLE inventory_reservations IS 'Stock held for an order per inventory item; released on cancel, consumed on ship.';

-- ---------------------------------------------------------------------------
-- updated_at triggers
-- ---------------------------------------------------------------------------

CREATE TRIGGER creators_set_updated_at        BEFORE UPDATE ON creators
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER shops_set_updated_at           BEFORE UPDATE ON shops
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER orders_set_updated_at          BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER order_items_set_updated_at     BEFORE UPDATE ON order_items
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER order_workflows_set_updated_at BEFORE UPDATE ON order_workflows
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER inventory_items_set_updated_at BEFORE UPDATE ON inventory_items
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
