-- 014: the creators' event log, for live updates (GET /api/events) and
-- outbound notifications.
--
-- Triggers append one row per change in the writer's own transaction, so
-- an event exists exactly when its change committed: a rolled-back change
-- reports nothing, and a crash after the commit loses nothing.  That is
-- why the log is here rather than in Redis, whose copy would be written
-- after the commit and could be lost between the two.
--
-- Readers follow the log by (xid, seq), not by seq alone.  seq is taken at
-- insert time, but transactions commit in another order: a reader that saw
-- seq 101 could later see 100 appear and skip it.  A reader takes only rows
-- whose transaction is older than its snapshot's xmin (every such
-- transaction has ended, so no row can appear below that point any more)
-- and orders them by (xid, seq); the position (xid, seq) it stops at is
-- then final.  The cost: a long-running writing transaction anywhere in
-- the cluster holds events back until it ends.
--
-- Rows are kept for events.retention (the sweep deletes older ones), long
-- enough for a client to resume with Last-Event-ID after a disconnect.

CREATE TABLE creator_events (
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    seq        bigint      GENERATED ALWAYS AS IDENTITY,
    user_id    uuid        NOT NULL,
    type       text        NOT NULL CHECK (char_length(type) <= 64),
    order_id   uuid,
    data       jsonb       NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, seq)
);
COMMENT ON TABLE creator_events IS
    'What changed for a creator, appended by triggers in the changing transaction; read in (xid, seq) order below the snapshot xmin.';
-- Resuming one creator's stream after Last-Event-ID.
CREATE INDEX creator_events_user_idx ON creator_events (user_id, xid, seq);
-- The retention sweep.
CREATE INDEX creator_events_created_idx ON creator_events (created_at);

-- The statuses the needs-attention inbox lists (GET /api/workflows).
CREATE FUNCTION creator_event_attention(s workflow_execution_status) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT s::text IN ('failed', 'paused', 'waiting') $$;

-- New orders: one statement for the whole insert (an ingest batch inserts
-- many orders at once).
CREATE FUNCTION creator_events_orders_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO creator_events (user_id, type, order_id, data)
    SELECT n.user_id, 'order.created', n.id,
           jsonb_build_object('order_id', n.id, 'tiktok_order_id', n.tiktok_order_id,
               'order_number', n.order_number, 'order_status', n.order_status,
               'workflow_status', n.workflow_status, 'total_amount', n.total_amount,
               'currency', n.currency, 'order_date', n.order_date, 'version', n.version)
    FROM events_new n;
    RETURN NULL;
END $$;

-- A status or workflow status that changed: one event each.
CREATE FUNCTION creator_events_orders_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.order_status IS DISTINCT FROM NEW.order_status THEN
        INSERT INTO creator_events (user_id, type, order_id, data)
        VALUES (NEW.user_id, 'order.status_changed', NEW.id,
            jsonb_build_object('order_id', NEW.id, 'tiktok_order_id', NEW.tiktok_order_id,
                'order_number', NEW.order_number, 'from', OLD.order_status,
                'to', NEW.order_status, 'workflow_status', NEW.workflow_status,
                'version', NEW.version));
    END IF;
    IF OLD.workflow_status IS DISTINCT FROM NEW.workflow_status THEN
        INSERT INTO creator_events (user_id, type, order_id, data)
        VALUES (NEW.user_id, 'order.workflow_changed', NEW.id,
            jsonb_build_object('order_id', NEW.id, 'tiktok_order_id', NEW.tiktok_order_id,
                'order_number', NEW.order_number, 'from', OLD.workflow_status,
                'to', NEW.workflow_status, 'order_status', NEW.order_status,
                'version', NEW.version));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_events_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS events_new FOR EACH STATEMENT
    EXECUTE FUNCTION creator_events_orders_inserted();
CREATE TRIGGER orders_events_update AFTER UPDATE OF order_status, workflow_status ON orders
    FOR EACH ROW
    WHEN ((OLD.order_status, OLD.workflow_status) IS DISTINCT FROM
          (NEW.order_status, NEW.workflow_status))
    EXECUTE FUNCTION creator_events_orders_updated();

-- A workflow that moved to another step or status; one that now waits for
-- the creator (failed, paused, waiting) also says so as attention.needed.
CREATE FUNCTION creator_events_workflow_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before_status workflow_execution_status;
    before_step text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        before_status := OLD.workflow_status;
        before_step := OLD.current_step;
    END IF;
    INSERT INTO creator_events (user_id, type, order_id, data)
    VALUES (NEW.user_id, 'workflow.step', NEW.order_id,
        jsonb_build_object('order_id', NEW.order_id, 'workflow_id', NEW.id,
            'workflow', NEW.workflow_name, 'step', NEW.current_step,
            'status', NEW.workflow_status, 'from_step', before_step,
            'from_status', before_status, 'error', NEW.last_error,
            'error_count', NEW.error_count));
    IF creator_event_attention(NEW.workflow_status)
       AND (before_status IS NULL OR NOT creator_event_attention(before_status)) THEN
        INSERT INTO creator_events (user_id, type, order_id, data)
        VALUES (NEW.user_id, 'attention.needed', NEW.order_id,
            jsonb_build_object('order_id', NEW.order_id, 'workflow_id', NEW.id,
                'workflow', NEW.workflow_name, 'step', NEW.current_step,
                'status', NEW.workflow_status, 'error', NEW.last_error));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER order_workflows_events_insert AFTER INSERT ON order_workflows
    FOR EACH ROW EXECUTE FUNCTION creator_events_workflow_changed();
CREATE TRIGGER order_workflows_events_update
    AFTER UPDATE OF current_step, workflow_status ON order_workflows
    FOR EACH ROW
    WHEN ((OLD.current_step, OLD.workflow_status) IS DISTINCT FROM
          (NEW.current_step, NEW.workflow_status))
    EXECUTE FUNCTION creator_events_workflow_changed();

-- Stock that has just fallen to its low-stock mark (available <= low_stock,
-- as the inventory list's low filter counts it), not every change below
-- it, which would repeat the news on every reservation.  A SKU created low
-- is the creator's own doing and reports nothing.
CREATE FUNCTION creator_events_stock_low() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO creator_events (user_id, type, data)
    VALUES (NEW.user_id, 'stock.low',
        jsonb_build_object('sku', NEW.sku, 'product_name', NEW.product_name,
            'on_hand', NEW.on_hand, 'reserved', NEW.reserved,
            'available', NEW.on_hand - NEW.reserved, 'low_stock', NEW.low_stock));
    RETURN NULL;
END $$;

CREATE TRIGGER inventory_items_events_low
    AFTER UPDATE OF on_hand, reserved, low_stock ON inventory_items
    FOR EACH ROW
    WHEN (NEW.on_hand - NEW.reserved <= NEW.low_stock
          AND OLD.on_hand - OLD.reserved > OLD.low_stock)
    EXECUTE FUNCTION creator_events_stock_low();
