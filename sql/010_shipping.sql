-- Shipping: how each order ships (TikTok's label or the creator's own),
-- the labels bought from the carrier, the packages shipped on TikTok, the
-- carrier's tracking events, and each creator's shipping settings.
--
-- A shipment row is a fact of the outside world, written as soon as it is
-- learnt and keyed by the workflow step that caused it (idem_key): a step
-- resumed after a crash finds what it already did here before it calls
-- anyone, so it never buys a second label or ships a package twice.  The
-- workflow's own progress still commits through wf_commit (sql/009).

-- What Get Order Detail says about how the order ships (src/order/apply.c).
ALTER TABLE orders
    ADD COLUMN shipping_type text CHECK (shipping_type IN ('TIKTOK', 'SELLER')),
    ADD COLUMN delivery_option_id text CHECK (char_length(delivery_option_id) <= 64),
    -- Fulfilled by TikTok (FBT): TikTok's warehouse ships, the seller cannot.
    ADD COLUMN fulfillment_type text CHECK (fulfillment_type IN ('FULFILLMENT_BY_SELLER',
        'FULFILLMENT_BY_TIKTOK')),
    -- [{"id": package id, "line_item_ids": [...]}] as TikTok has them; empty
    -- until TikTok makes a package (US seller shipping: at the first ship call).
    ADD COLUMN tiktok_packages jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(tiktok_packages) = 'array');

-- Orders still to ship, by TikTok's latest ship time: the SLA clock
-- (orders at risk, late dispatches) counts from here.
CREATE INDEX orders_to_ship_sla_idx ON orders (rts_sla_time)
    WHERE order_status IN ('confirmed', 'processing') AND rts_sla_time IS NOT NULL;

-- A SKU's parcel, for rates: ounces and inches, as the carrier wants them.
ALTER TABLE inventory_items
    ADD COLUMN weight_oz numeric(8,2) CHECK (weight_oz > 0 AND weight_oz <= 2400),
    ADD COLUMN length_in numeric(6,2) CHECK (length_in > 0 AND length_in <= 1000),
    ADD COLUMN width_in  numeric(6,2) CHECK (width_in > 0 AND width_in <= 1000),
    ADD COLUMN height_in numeric(6,2) CHECK (height_in > 0 AND height_in <= 1000);

-- One row per creator; absent: no from address, hence no seller-shipped label.
CREATE TABLE shipping_settings (
    user_id         uuid        PRIMARY KEY REFERENCES creators (id) ON DELETE CASCADE,
    -- {name, company, street1, street2, city, state, zip, country, phone, email}
    from_address    jsonb       CHECK (from_address IS NULL OR jsonb_typeof(from_address) = 'object'),
    -- The default parcel {weight_oz, length_in, width_in, height_in}; any may be absent.
    parcel          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(parcel) = 'object'),
    -- {"choose": "cheapest"|"fastest", "carrier", "service", "max_cost"}
    rate_rule       jsonb       NOT NULL DEFAULT '{"choose": "cheapest"}'
                                CHECK (jsonb_typeof(rate_rule) = 'object'),
    handover_method text        NOT NULL DEFAULT 'PICKUP'
                                CHECK (handover_method IN ('PICKUP', 'DROP_OFF')),
    version         integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shipping_settings IS 'Per-creator shipping: from address, default parcel, rate rule, TikTok handover method.';

-- One row per package and label: a seller-shipped package's label from the
-- carrier, or a TikTok-shipped package's document.
--   new        the carrier shipment is being created (no rates yet)
--   rated      the carrier shipment exists with rates; nothing bought
--   purchased  the label is bought (tracking number, label URL, cost)
--   shipping   the ship call to TikTok is on its way (a crash here: ask
--              TikTok whether it shipped before calling again)
--   shipped    TikTok has the package shipped
--   voiding    a refund of the label was asked for
--   voided     the carrier refunds it (the row no longer counts as live)
--   void_rejected  the carrier refused the refund: needs attention
CREATE TABLE shipments (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    order_id            uuid        NOT NULL,
    -- TikTok's package id, or "order" while TikTok has made none.
    package_key         text        NOT NULL CHECK (char_length(package_key) BETWEEN 1 AND 64),
    shipping_type       text        NOT NULL CHECK (shipping_type IN ('TIKTOK', 'SELLER')),
    -- The workflow step (or API call) that made it: "<run>:<seq>:<action>:<package>".
    idem_key            text        NOT NULL UNIQUE CHECK (char_length(idem_key) <= 300),
    state               text        NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'rated',
                                    'purchased', 'shipping', 'shipped', 'voiding', 'voided',
                                    'void_rejected')),
    carrier_shipment_id text        CHECK (char_length(carrier_shipment_id) <= 100),
    rates               jsonb,
    rate_id             text        CHECK (char_length(rate_id) <= 100),
    carrier             text        CHECK (char_length(carrier) <= 100),
    service             text        CHECK (char_length(service) <= 100),
    cost                numeric(12,2) CHECK (cost >= 0),
    currency            text        CHECK (currency ~ '^[A-Z]{3}$'),
    tracking_number     text        CHECK (char_length(tracking_number) <= 100),
    label_url           text        CHECK (char_length(label_url) <= 2000),
    tracker_id          text        CHECK (char_length(tracker_id) <= 100),
    tiktok_package_id   text        CHECK (char_length(tiktok_package_id) <= 64),
    shipping_provider_id text       CHECK (char_length(shipping_provider_id) <= 64),
    handover_method     text,
    -- The carrier's latest tracker status and its timeline (newest last, <= 100).
    tracking_status     text        CHECK (char_length(tracking_status) <= 50),
    -- The tracker's updated_at of the status stored: an older event changes nothing.
    tracking_updated_at timestamptz,
    tracking_events     jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tracking_events) = 'array'),
    refund_status       text        CHECK (char_length(refund_status) <= 50),
    last_error          text,
    purchased_at        timestamptz,
    shipped_at          timestamptz,
    delivered_at        timestamptz,
    voided_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id) ON DELETE CASCADE
);
COMMENT ON TABLE shipments IS 'Labels and packages of an order: carrier purchases, TikTok ship calls, tracking.';
-- One live label per package; a voided one makes room for a re-buy.
CREATE UNIQUE INDEX shipments_live_idx ON shipments (order_id, package_key)
    WHERE state NOT IN ('voided');
-- An order's shipments, voided ones included (facts, detail, compensation).
CREATE INDEX shipments_order_idx ON shipments (order_id);
-- Carrier events find their shipment by tracking number.
CREATE INDEX shipments_tracking_idx ON shipments (tracking_number)
    WHERE tracking_number IS NOT NULL;
CREATE TRIGGER shipments_set_updated_at BEFORE UPDATE ON shipments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The carrier's webhook events, as received (verified first), once each.
CREATE TABLE carrier_events (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE CHECK (char_length(event_id) BETWEEN 1 AND 100),
    description   text        NOT NULL CHECK (char_length(description) <= 100),
    tracking_code text        CHECK (char_length(tracking_code) <= 100),
    status        text        CHECK (char_length(status) <= 50),
    raw_body      text        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- The shipment it applied to; null: none matched (kept for inspection).
    shipment_id   uuid        REFERENCES shipments (id) ON DELETE SET NULL,
    applied       boolean     NOT NULL DEFAULT false
);
COMMENT ON TABLE carrier_events IS 'Carrier (EasyPost) webhook events: deduplicated by event id, applied to shipments.';

-- The facts a workflow's conditions and gates read (sql/009), with how the
-- order ships and what the carrier says of it.
CREATE OR REPLACE FUNCTION order_facts(p_order uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'total_amount', o.total_amount::text, 'currency', o.currency,
        'payment_status', o.payment_status, 'tags', to_jsonb(o.tags),
        'skus', coalesce((SELECT jsonb_agg(DISTINCT i.product_sku) FROM order_items i
            WHERE i.order_id = o.id), '[]'),
        'item_count', coalesce((SELECT sum(i.quantity) FROM order_items i
            WHERE i.order_id = o.id), 0),
        'region', o.shipping_address ->> 'region_code', 'tiktok_status', o.tiktok_status,
        'is_on_hold', o.is_on_hold, 'buyer_request_cancel', o.buyer_request_cancel,
        'shipping_method', o.shipping_method, 'order_source', o.order_source,
        'priority_level', o.priority_level, 'order_status', o.order_status,
        'shipping_type', coalesce(o.shipping_type, 'TIKTOK'),
        'fulfilled_by_tiktok', o.fulfillment_type IS NOT DISTINCT FROM 'FULFILLMENT_BY_TIKTOK',
        'package_count', greatest(jsonb_array_length(o.tiktok_packages), 1),
        -- Every live package delivered by the carrier's word.
        'carrier_delivered', coalesce((SELECT bool_and(s.tracking_status = 'delivered')
            FROM shipments s WHERE s.order_id = o.id AND s.state NOT IN ('voided',
            'void_rejected', 'voiding')), false),
        'carrier_status', (SELECT s.tracking_status FROM shipments s WHERE s.order_id = o.id
            AND s.tracking_status IS NOT NULL ORDER BY s.updated_at DESC LIMIT 1))
    FROM orders o WHERE o.id = p_order
$$;

-- Write what a shipping step learnt (src/ship/ship.c): without "id", a new
-- row (or the one its idem_key already made); with "id", that row, each
-- field given replacing the stored one.  The times follow the state.
-- The stock of the lines p_lines of an order leaves with their package: on
-- hand and reserved go down by their units, the reservations keep what is
-- still to ship (consumed once nothing is).  Stock rows in (user_id, sku)
-- order, as inventory_take locks them.
CREATE FUNCTION inventory_consume_lines(p_order uuid, p_lines text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    x record;
BEGIN
    FOR x IN SELECT r.id AS rid, r.inventory_item_id AS item, r.quantity AS held,
            sum((SELECT count(*) FROM unnest(i.tiktok_line_item_ids) AS l(id)
                 WHERE l.id = ANY (p_lines)))::integer AS k
        FROM order_items i JOIN orders o ON o.id = i.order_id
        JOIN inventory_items ii ON ii.user_id = o.user_id AND ii.sku = i.product_sku
        JOIN inventory_reservations r ON r.order_id = i.order_id AND r.inventory_item_id = ii.id
            AND r.status = 'active'
        WHERE i.order_id = p_order
        GROUP BY r.id, r.inventory_item_id, r.quantity, ii.user_id, ii.sku
        ORDER BY ii.user_id, ii.sku
    LOOP
        CONTINUE WHEN x.k = 0;
        UPDATE inventory_items SET on_hand = on_hand - least(x.k, x.held),
            reserved = reserved - least(x.k, x.held) WHERE id = x.item;
        IF x.k >= x.held THEN
            UPDATE inventory_reservations SET status = 'consumed', consumed_at = now()
            WHERE id = x.rid;
        ELSE
            UPDATE inventory_reservations SET quantity = quantity - x.k WHERE id = x.rid;
        END IF;
    END LOOP;
END $$;

-- p may also hold "consume_lines": the TikTok line item ids whose stock
-- leaves when the row first becomes shipped (inventory_consume_lines), so a
-- package's stock goes with it, once, in the transaction that records it.
CREATE FUNCTION shipment_save(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r shipments;
    out jsonb;
    prev text;
BEGIN
    r := jsonb_populate_record(NULL::shipments, p);
    IF r.id IS NULL THEN
        -- The row first (or the one this key made), then the fields as for any row.
        INSERT INTO shipments AS s (user_id, order_id, package_key, shipping_type, idem_key,
            state)
        VALUES (r.user_id, r.order_id, r.package_key, r.shipping_type, r.idem_key,
            coalesce(r.state, 'new'))
        ON CONFLICT (idem_key) DO UPDATE SET idem_key = EXCLUDED.idem_key
        RETURNING s.id INTO r.id;
    END IF;
    SELECT s.state INTO prev FROM shipments s WHERE s.id = r.id AND s.user_id = r.user_id
    FOR UPDATE;
    IF r.state = 'shipped' AND prev IS DISTINCT FROM 'shipped' AND p ? 'consume_lines' THEN
        PERFORM inventory_consume_lines((SELECT s.order_id FROM shipments s WHERE s.id = r.id),
            ARRAY(SELECT jsonb_array_elements_text(p -> 'consume_lines')));
    END IF;
    UPDATE shipments s SET
        state = coalesce(r.state, s.state),
        carrier_shipment_id = coalesce(r.carrier_shipment_id, s.carrier_shipment_id),
        rates = coalesce(r.rates, s.rates),
        rate_id = coalesce(r.rate_id, s.rate_id),
        carrier = coalesce(r.carrier, s.carrier),
        service = coalesce(r.service, s.service),
        cost = coalesce(r.cost, s.cost),
        currency = coalesce(r.currency, s.currency),
        tracking_number = coalesce(r.tracking_number, s.tracking_number),
        label_url = coalesce(r.label_url, s.label_url),
        tracker_id = coalesce(r.tracker_id, s.tracker_id),
        tiktok_package_id = coalesce(r.tiktok_package_id, s.tiktok_package_id),
        shipping_provider_id = coalesce(r.shipping_provider_id, s.shipping_provider_id),
        handover_method = coalesce(r.handover_method, s.handover_method),
        refund_status = coalesce(r.refund_status, s.refund_status),
        last_error = CASE WHEN p ? 'last_error' THEN r.last_error ELSE s.last_error END,
        purchased_at = CASE WHEN r.state = 'purchased' THEN coalesce(s.purchased_at, now())
            ELSE s.purchased_at END,
        shipped_at = CASE WHEN r.state = 'shipped' THEN coalesce(s.shipped_at, now())
            ELSE s.shipped_at END,
        voided_at = CASE WHEN r.state = 'voided' THEN coalesce(s.voided_at, now())
            ELSE s.voided_at END
    WHERE s.id = r.id AND s.user_id = r.user_id
    RETURNING to_jsonb(s.*) INTO out;
    RETURN out;
END $$;

-- Apply one verified carrier event (src/ship/cwebhook.c) once: stored by
-- its id (a replay is a duplicate and changes nothing), then, for a
-- tracker event, the shipment with that tracking number (and tracker) gets
-- the status and a timeline entry unless it already holds a newer one
-- (EasyPost's updated_at has whole seconds: an equal one is taken); for
-- a refund event, the shipment's refund status.  The order's waiting run
-- is woken (retry_after), so the sweep finds it should the daemon die
-- before it tells the owner worker.  Returns whether the event was new and
-- the order it applied to (none: nulls).
CREATE FUNCTION carrier_event(p_event_id text, p_description text, p_tracking text,
    p_tracker_id text, p_status text, p_updated timestamptz, p_entry jsonb, p_raw text,
    p_refund_shipment text, p_refund_status text)
RETURNS TABLE (fresh boolean, order_id uuid, user_id uuid, tiktok_order_id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ev bigint;
    s_id uuid;
    s_order uuid;
    s_user uuid;
BEGIN
    INSERT INTO carrier_events (event_id, description, tracking_code, status, raw_body)
    VALUES (p_event_id, p_description, p_tracking, p_status, p_raw)
    ON CONFLICT (event_id) DO NOTHING RETURNING id INTO ev;
    fresh := ev IS NOT NULL;
    IF ev IS NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_tracking IS NOT NULL AND p_status IS NOT NULL THEN
        UPDATE shipments s SET tracking_status = p_status, tracking_updated_at = p_updated,
            tracking_events = (SELECT coalesce(jsonb_agg(e ORDER BY k), '[]')
                FROM jsonb_array_elements(s.tracking_events || jsonb_build_array(p_entry))
                WITH ORDINALITY AS x(e, k)
                WHERE k > jsonb_array_length(s.tracking_events) + 1 - 100),
            delivered_at = CASE WHEN p_status = 'delivered' THEN coalesce(s.delivered_at, now())
                ELSE s.delivered_at END
        WHERE s.id = (SELECT x.id FROM shipments x WHERE x.tracking_number = p_tracking
                AND (x.tracker_id IS NULL OR p_tracker_id IS NULL OR x.tracker_id = p_tracker_id)
                AND x.state NOT IN ('voided', 'voiding')
                ORDER BY x.created_at DESC LIMIT 1)
            AND (s.tracking_updated_at IS NULL OR p_updated IS NULL
                OR s.tracking_updated_at <= p_updated)
        RETURNING s.id, s.order_id, s.user_id INTO s_id, s_order, s_user;
    ELSIF p_refund_shipment IS NOT NULL THEN
        UPDATE shipments s SET refund_status = coalesce(p_refund_status, s.refund_status)
        WHERE s.carrier_shipment_id = p_refund_shipment
        RETURNING s.id, s.order_id, s.user_id INTO s_id, s_order, s_user;
    END IF;
    IF s_id IS NOT NULL THEN
        UPDATE carrier_events SET shipment_id = s_id, applied = true WHERE id = ev;
        UPDATE order_workflows w SET retry_after = now()
        WHERE w.order_id = s_order AND w.workflow_status = 'waiting';
        order_id := s_order;
        user_id := s_user;
        SELECT o.tiktok_order_id INTO tiktok_order_id FROM orders o WHERE o.id = s_order;
    END IF;
    RETURN NEXT;
END $$;

-- ---------------------------------------------------------------------------
-- Partial cancellation: TikTok cancels some lines of an order
-- ---------------------------------------------------------------------------

-- quantity counts the units still ordered (0 when TikTok cancelled every line
-- of the SKU); the cancelled lines are kept apart (src/order/apply.c), and
-- the apply statement (src/order/ostore.c) gives their reserved units back.
ALTER TABLE order_items DROP CONSTRAINT order_items_quantity_check,
    ADD CONSTRAINT order_items_quantity_check CHECK (quantity >= 0),
    ADD COLUMN cancelled_quantity integer NOT NULL DEFAULT 0 CHECK (cancelled_quantity >= 0),
    ADD COLUMN cancelled_line_item_ids text[] NOT NULL DEFAULT '{}';

-- sql/009's, reserving only SKUs with units still ordered.
CREATE OR REPLACE FUNCTION inventory_reserve(p jsonb)
RETURNS TABLE (order_id uuid, outcome text, missing text, items uuid[], qtys integer[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    o record;
    l record;
    -- The free units of each stock row the set needs: v_free[k] of v_item[k].
    v_item uuid[] := '{}';
    v_free integer[] := '{}';
    k integer;
    a_order uuid[] := '{}';
    a_user uuid[] := '{}';
    a_item uuid[] := '{}';
    a_qty integer[] := '{}';
    ok boolean;
    why text;
    miss text[];
    lines jsonb;
BEGIN
    -- Read (not lock) every stock row the set needs: inventory_take checks
    -- again, under the lock, that the units are still there.
    FOR l IN SELECT ii.id, ii.on_hand - ii.reserved AS free
        FROM inventory_items ii WHERE ii.id IN (
            SELECT ii2.id FROM jsonb_to_recordset(p) AS x(order_id uuid, user_id uuid)
            JOIN order_items i ON i.order_id = x.order_id
            JOIN inventory_items ii2 ON ii2.user_id = x.user_id AND ii2.sku = i.product_sku)
    LOOP
        v_item := v_item || l.id;
        v_free := v_free || l.free;
    END LOOP;

    FOR o IN SELECT x.n, x.order_id AS oid, x.user_id AS uid, x.policy
        FROM jsonb_to_recordset(p) AS x(n integer, order_id uuid, user_id uuid, policy text)
        ORDER BY x.n
    LOOP
        -- Reserved already (a resumed step), or shipped: nothing to take.
        IF EXISTS (SELECT 1 FROM inventory_reservations r
                   WHERE r.order_id = o.oid AND r.status IN ('active', 'consumed')) THEN
            order_id := o.oid; outcome := 'ok'; missing := NULL; items := '{}'; qtys := '{}';
            RETURN NEXT;
            CONTINUE;
        END IF;
        ok := true; why := NULL; miss := '{}';
        SELECT coalesce(jsonb_agg(jsonb_build_object('sku', s.sku, 'item', s.item, 'qty', s.qty)),
            '[]') INTO lines
        FROM (SELECT i.product_sku AS sku, ii.id AS item, sum(i.quantity)::integer AS qty
              FROM order_items i LEFT JOIN inventory_items ii
                  ON ii.user_id = o.uid AND ii.sku = i.product_sku
              WHERE i.order_id = o.oid GROUP BY 1, 2 HAVING sum(i.quantity) > 0) s;
        FOR l IN SELECT * FROM jsonb_to_recordset(lines) AS y(sku text, item uuid, qty integer)
        LOOP
            IF l.item IS NULL THEN
                IF o.policy = 'needs_attention' THEN
                    ok := false; why := 'untracked'; miss := miss || l.sku;
                END IF;
            ELSIF v_free[array_position(v_item, l.item)] < l.qty THEN
                ok := false;
                IF why IS NULL THEN why := 'nostock'; END IF;
                IF why = 'nostock' THEN miss := miss || l.sku; END IF;
            END IF;
        END LOOP;
        items := '{}'; qtys := '{}';
        IF ok THEN
            FOR l IN SELECT * FROM jsonb_to_recordset(lines) AS y(sku text, item uuid, qty integer)
                WHERE y.item IS NOT NULL
            LOOP
                k := array_position(v_item, l.item);
                v_free[k] := v_free[k] - l.qty;
                a_order := a_order || o.oid; a_user := a_user || o.uid;
                a_item := a_item || l.item; a_qty := a_qty || l.qty;
                items := items || l.item; qtys := qtys || l.qty;
            END LOOP;
        END IF;
        order_id := o.oid;
        outcome := CASE WHEN ok THEN 'ok' ELSE why END;
        missing := CASE WHEN ok THEN NULL ELSE array_to_string(miss, ',') END;
        RETURN NEXT;
    END LOOP;

    -- A line released before (a cancelled run, a restarted one) is taken again.
    INSERT INTO inventory_reservations (user_id, order_id, inventory_item_id, quantity)
    SELECT u, r, i, q FROM unnest(a_user, a_order, a_item, a_qty) AS x(u, r, i, q)
    ON CONFLICT (order_id, inventory_item_id) DO UPDATE SET status = 'active',
        quantity = EXCLUDED.quantity, created_at = now(), released_at = NULL,
        consumed_at = NULL
    WHERE inventory_reservations.status = 'released';
END $$;
