-- 009: the workflow engine and inventory (src/wf/).
--
-- A workflow run is one order_workflows row: where it stands (current_step,
-- action_index, workflow_status, wait_kind), what it did (step_history,
-- the compensations still owed in compensate), and who runs it (the lease).
-- Every transition is one call of wf_commit, one transaction with the
-- step's own effect (a reservation), guarded by the row's version, so a
-- retried, resumed or doubled step never acts twice.
--
-- Lock order of every writer, so none can deadlock another: orders, then
-- order_workflows, then inventory_items (in user_id, sku order).

-- ---------------------------------------------------------------------------
-- Workflow runs
-- ---------------------------------------------------------------------------

ALTER TABLE order_workflows
    -- The order's owner key (its worker), so a claim needs no join.
    ADD COLUMN tiktok_order_id    text,
    -- The definition it started with: 0 for a built-in template, else the
    -- version of the creator's workflow_definitions row of that name.
    ADD COLUMN definition_version integer NOT NULL DEFAULT 0 CHECK (definition_version >= 0),
    -- Optimistic lock: every transition and manual action adds one.
    ADD COLUMN version            integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Transitions made so far; with the id, the idempotency key of a step.
    ADD COLUMN seq                integer NOT NULL DEFAULT 0 CHECK (seq >= 0),
    -- The next entry action of current_step to run.
    ADD COLUMN action_index       integer NOT NULL DEFAULT 0 CHECK (action_index >= 0),
    -- Attempts of that action so far.
    ADD COLUMN attempt            integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    -- waiting: the event it waits for (stock, approval, shipment, delivery,
    -- tiktok_hold, cancel_decision); since when.
    ADD COLUMN wait_kind          text CHECK (char_length(wait_kind) <= 32),
    ADD COLUMN waiting_since      timestamptz,
    -- TikTok's deadline for the order (rts_sla_time, else shipping_due_time):
    -- due runs are claimed in this order.
    ADD COLUMN deadline_at        timestamptz,
    -- Compensations owed for what was done, the next one first.
    ADD COLUMN compensate         text[] NOT NULL DEFAULT '{}',
    -- compensating: what it ends as (cancelled, or failed).
    ADD COLUMN end_status         workflow_execution_status,
    -- paused: what resume goes back to.
    ADD COLUMN paused_from        workflow_execution_status,
    -- current_step is a terminal state of the definition.
    ADD COLUMN terminal           boolean NOT NULL DEFAULT false,
    -- The buyer's cancellation request: decided by the creator (declined), or not.
    ADD COLUMN cancel_decision    text CHECK (cancel_decision IN ('declined')),
    -- A transition being taken whose actions have not all committed yet.
    ADD COLUMN pending_trigger    text CHECK (char_length(pending_trigger) <= 64),
    -- force_restart: the run to start once this one is cancelled and compensated.
    ADD COLUMN restart_with       jsonb CHECK (jsonb_typeof(restart_with) = 'object');

UPDATE order_workflows w SET tiktok_order_id = o.tiktok_order_id,
    deadline_at = coalesce(o.rts_sla_time, o.shipping_due_time)
FROM orders o WHERE o.id = w.order_id;
ALTER TABLE order_workflows ALTER COLUMN tiktok_order_id SET NOT NULL;

-- Requests stored before the engine existed (current_step 'requested') run
-- now, from the start; of several for one order only the newest.
UPDATE order_workflows w SET workflow_status = 'cancelled', failed_at = now(),
    last_error = 'superseded by a newer request for the order'
WHERE w.workflow_status = 'running' AND EXISTS (SELECT 1 FROM order_workflows n
    WHERE n.order_id = w.order_id AND n.workflow_status = 'running'
    AND (n.created_at, n.id) > (w.created_at, w.id));
UPDATE order_workflows SET current_step = 'new', retry_after = now()
WHERE workflow_status = 'running' AND current_step = 'requested';

DROP INDEX order_workflows_one_running_idx;
DROP INDEX order_workflows_runnable_idx;

-- One live workflow per order.
CREATE UNIQUE INDEX order_workflows_one_active_idx ON order_workflows (order_id)
    WHERE workflow_status IN ('running', 'waiting', 'paused', 'failed', 'compensating');
-- Due runs (retry_after is when), in TikTok deadline order: the claim.
CREATE INDEX order_workflows_due_idx ON order_workflows (deadline_at NULLS LAST, retry_after)
    WHERE retry_after IS NOT NULL;
-- The needs-attention inbox of a creator, by deadline.
CREATE INDEX order_workflows_attention_idx ON order_workflows (user_id, deadline_at NULLS LAST, id)
    WHERE workflow_status IN ('failed', 'paused', 'waiting', 'compensating');
-- Runs waiting for stock, woken when stock comes.
CREATE INDEX order_workflows_stock_idx ON order_workflows (user_id)
    WHERE workflow_status = 'waiting' AND wait_kind = 'stock';

-- Orders stored before the engine existed that TikTok has not shipped yet
-- get their run, unnamed (the creator's rules name it when the claim sweep
-- loads it), as the order write path gives every new order.
INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name, current_step,
    workflow_status, deadline_at, retry_after)
SELECT o.id, o.user_id, o.tiktok_order_id, '', '', 'running',
    coalesce(o.rts_sla_time, o.shipping_due_time), now()
FROM orders o
WHERE o.tiktok_status IN ('UNPAID', 'ON_HOLD', 'AWAITING_SHIPMENT')
AND NOT EXISTS (SELECT 1 FROM order_workflows w WHERE w.order_id = o.id
    AND w.workflow_status IN ('running', 'waiting', 'paused', 'failed', 'compensating'))
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Definitions and rules
-- ---------------------------------------------------------------------------

CREATE TABLE workflow_definitions (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    name        text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    version     integer     NOT NULL CHECK (version >= 1),
    definition  jsonb       NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name, version)
);
COMMENT ON TABLE workflow_definitions IS 'Creators'' workflow definitions; each version is immutable, a run keeps the version it started with.';

-- Versions are immutable: a running workflow keeps the one it started with.
CREATE FUNCTION workflow_definitions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'workflow definition versions are immutable; store a new version';
END $$;
CREATE TRIGGER workflow_definitions_no_update BEFORE UPDATE ON workflow_definitions
    FOR EACH ROW EXECUTE FUNCTION workflow_definitions_immutable();

CREATE TABLE workflow_rules (
    user_id     uuid        PRIMARY KEY REFERENCES creators (id) ON DELETE CASCADE,
    version     integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    rules       jsonb       NOT NULL CHECK (jsonb_typeof(rules) = 'object'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE workflow_rules IS 'Per creator: the rules that pick the workflow of a new order (If-Match versioned).';
CREATE TRIGGER workflow_rules_set_updated_at BEFORE UPDATE ON workflow_rules
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ---------------------------------------------------------------------------
-- Inventory
-- ---------------------------------------------------------------------------

-- What reserve_stock does with a SKU that has no inventory row.
ALTER TABLE creators ADD COLUMN untracked_skus text NOT NULL DEFAULT 'not_tracked'
    CHECK (untracked_skus IN ('not_tracked', 'needs_attention'));

ALTER TABLE inventory_items
    ADD COLUMN low_stock integer NOT NULL DEFAULT 0 CHECK (low_stock >= 0),
    ADD COLUMN version   integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD CONSTRAINT inventory_items_sku_len CHECK (char_length(sku) BETWEEN 1 AND 100),
    ADD CONSTRAINT inventory_items_name_len CHECK (char_length(product_name) <= 255);
CREATE INDEX inventory_items_sku_search_idx ON inventory_items (user_id, lower(sku) text_pattern_ops);

ALTER TABLE inventory_reservations ADD COLUMN consumed_at timestamptz;

-- ---------------------------------------------------------------------------
-- Order facts: what conditions read (include/orderflow/wf_cond.h)
-- ---------------------------------------------------------------------------

CREATE FUNCTION order_facts(p_order uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
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
        'priority_level', o.priority_level, 'order_status', o.order_status)
    FROM orders o WHERE o.id = p_order
$$;

-- ---------------------------------------------------------------------------
-- Reservations
-- ---------------------------------------------------------------------------

-- Reserve stock for a set of orders, each one every SKU or none, in the
-- order given (the caller sorts by deadline).  Each element: n, order_id,
-- user_id, policy (what a SKU without an inventory row means: not_tracked,
-- or needs_attention).  Outcome per order: ok (reserved now, or already,
-- or shipped), nostock (missing: the SKUs short), untracked (missing: the
-- SKUs without a row); items and qtys: the stock it takes now (empty when it takes
-- none).  The reservation rows are inserted here; the stock rows are not
-- written: the caller takes the whole set's units with inventory_take at
-- the very end of its transaction, so a viral SKU's row is written once
-- per batch and locked only for the commit, not for the whole batch.
CREATE FUNCTION inventory_reserve(p jsonb)
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
              WHERE i.order_id = o.oid GROUP BY 1, 2) s;
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

-- Take qtys[k] units of stock row items[k] (each row once), under the
-- row's lock, in (user_id, sku) order; serialization_failure (the caller
-- retries the whole transaction) when a row no longer has them because
-- another transaction took or removed them since inventory_reserve read it.
CREATE FUNCTION inventory_take(p_items uuid[], p_qtys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    taken integer;
BEGIN
    -- NO KEY UPDATE: the reservation rows' foreign keys hold KEY SHARE
    -- locks on these rows, which FOR UPDATE would wait for.
    PERFORM 1 FROM inventory_items ii WHERE ii.id = ANY (p_items)
        ORDER BY ii.user_id, ii.sku FOR NO KEY UPDATE;
    UPDATE inventory_items ii SET reserved = ii.reserved + t.q
    FROM unnest(p_items, p_qtys) AS t(i, q)
    WHERE ii.id = t.i AND ii.on_hand - ii.reserved >= t.q;
    GET DIAGNOSTICS taken = ROW_COUNT;
    IF taken <> cardinality(p_items) THEN
        RAISE EXCEPTION 'the stock of % SKUs changed while it was being reserved',
            cardinality(p_items) - taken USING ERRCODE = 'serialization_failure';
    END IF;
END $$;

-- Release (p_consume false) or consume (true: shipped, on_hand goes down
-- too) the active reservations of a set of orders.  Idempotent: an order
-- with nothing active is a no-op.  Returns the SKUs whose stock became free.
CREATE FUNCTION inventory_settle(p_orders uuid[], p_consume boolean)
RETURNS TABLE (user_id uuid, sku text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM inventory_items ii WHERE ii.id IN (
        SELECT r.inventory_item_id FROM inventory_reservations r
        WHERE r.order_id = ANY (p_orders) AND r.status = 'active')
    ORDER BY ii.user_id, ii.sku FOR NO KEY UPDATE;
    RETURN QUERY
    WITH r AS (
        UPDATE inventory_reservations r
        SET status = CASE WHEN p_consume THEN 'consumed' ELSE 'released' END,
            released_at = CASE WHEN p_consume THEN NULL ELSE now() END,
            consumed_at = CASE WHEN p_consume THEN now() END
        WHERE r.order_id = ANY (p_orders) AND r.status = 'active'
        RETURNING r.inventory_item_id, r.quantity
    ), s AS (
        SELECT r.inventory_item_id AS item, sum(r.quantity)::integer AS q FROM r GROUP BY 1
    ), u AS (
        UPDATE inventory_items ii SET reserved = ii.reserved - s.q,
            on_hand = ii.on_hand - CASE WHEN p_consume THEN s.q ELSE 0 END
        FROM s WHERE ii.id = s.item
        RETURNING ii.user_id, ii.sku
    )
    SELECT u.user_id, u.sku FROM u WHERE NOT p_consume;
END $$;

-- Wake runs waiting for stock that the stock now there can serve: per
-- stock row, in deadline order, as many as its free units cover (an order
-- short on any row stays asleep).  p_user NULL: every creator.
CREATE FUNCTION wf_wake_stock(p_user uuid, p_limit integer) RETURNS integer
LANGUAGE sql AS $$
    WITH cand AS (
        SELECT w.id, w.order_id, w.user_id, w.deadline_at, w.created_at FROM order_workflows w
        WHERE w.workflow_status = 'waiting' AND w.wait_kind = 'stock' AND w.retry_after IS NULL
        AND (p_user IS NULL OR w.user_id = p_user)
    ), need AS (
        SELECT c.id, c.deadline_at, c.created_at, ii.id AS item, ii.on_hand - ii.reserved AS free,
            sum(i.quantity) AS q
        FROM cand c JOIN order_items i ON i.order_id = c.order_id
        JOIN inventory_items ii ON ii.user_id = c.user_id AND ii.sku = i.product_sku
        GROUP BY 1, 2, 3, 4, 5
    ), cum AS (
        SELECT id, deadline_at, created_at, free, sum(q) OVER (PARTITION BY item
            ORDER BY deadline_at NULLS LAST, created_at, id) AS running
        FROM need
    ), ok AS (
        SELECT id FROM cum GROUP BY id, deadline_at, created_at
        HAVING bool_and(running <= free)
        ORDER BY deadline_at NULLS LAST, created_at LIMIT p_limit
    ), up AS (
        UPDATE order_workflows w SET retry_after = now() FROM ok
        WHERE w.id = ok.id AND w.workflow_status = 'waiting' AND w.wait_kind = 'stock'
        RETURNING 1
    )
    SELECT count(*)::integer FROM up
$$;

-- ---------------------------------------------------------------------------
-- Transitions
-- ---------------------------------------------------------------------------

-- Commit a set of transitions, each all or nothing, in one transaction.
-- Each element of p_items (built by src/wf/wf.c):
--   n            its place
--   wf           the run's id; null for a new run, then start names it:
--   start        {"name", "def_version", "step", "config"}: insert the run
--                (at most one live run per order: "exists" when there is
--                one already)
--   order, user, tiktok   the order
--   expect       the version the run must be at (null: any)
--   effect       null, "reserve" (with policy), "release" or "consume"
--   then         the run's next state (below); for "reserve", one per
--                outcome instead: ok, nostock, untracked
--   audit        {"action", "actor", "after"}: an audit_log row (manual actions)
--   name, def_version   the workflow the rules chose for a run the sync
--                started unnamed (sql/007's apply statement inserts it)
-- A next state: step, action, status, wait (or null), due_ms (retry_after =
-- now() + due_ms; null: not due), attempt, seq, hist (step_history entries
-- to append), error (last_error; null clears, absent keeps), errors_add, wf_status
-- (orders.workflow_status, or null), order_status (through order_change,
-- or null), comp (the compensations owed, next first), end_status,
-- paused_from, terminal, final
-- ("completed", "failed", "cancelled" or null), lease (keep it: true; the
-- run parks or ends: false), cancel_decision, pending_trigger, restart
-- (the start of the run that follows this one once it ends; kept in
-- restart_with while compensating).
-- A run that ends with a restart inserts its follower, due at once; its
-- id comes back in outcome.
-- Returns per element: verdict ok, stale (the run moved, or another
-- process holds it), exists (a live run already), gone (no such run); the
-- effect's outcome and the SKUs it missed; the run's id and new version.
CREATE FUNCTION wf_commit(p_items jsonb, p_owner text, p_lease_ms bigint, p_machine jsonb)
RETURNS TABLE (n integer, wf_id uuid, verdict text, outcome text, missing text, version integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    it record;
    cur record;
    t jsonb;
    ids uuid[] := '{}';
    verdicts text[] := '{}';
    res jsonb := '{}';
    -- The reservations asked for, as arrays: appending to a jsonb value
    -- copies it, which made a batch quadratic.
    r_n integer[] := '{}';
    r_order uuid[] := '{}';
    r_user uuid[] := '{}';
    r_policy text[] := '{}';
    rel uuid[] := '{}';
    con uuid[] := '{}';
    r record;
    take_items uuid[];
    take_qtys integer[];
    refused integer[];
    -- The status changes the states ask for (order_change), as arrays.
    c_n integer[] := '{}';
    c_order uuid[] := '{}';
    c_user uuid[] := '{}';
    c_status text[] := '{}';
    c_wf_status text[] := '{}';
    c_step text[] := '{}';
    c_wf uuid[] := '{}';
    out_version integer;
    hist jsonb;
BEGIN
    -- Orders first, in id order: the lock order of every writer.
    PERFORM 1 FROM orders o WHERE o.id IN (
        SELECT (e ->> 'order')::uuid FROM jsonb_array_elements(p_items) e)
    ORDER BY o.id FOR UPDATE;

    -- Pass 1: each run locked and judged; new runs inserted.
    FOR it IN SELECT x.* FROM jsonb_to_recordset(p_items) AS x(n integer, wf uuid,
        "order" uuid, "user" uuid, tiktok text, expect integer, start jsonb, effect text,
        policy text) ORDER BY x.n
    LOOP
        IF it.wf IS NULL THEN
            INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name,
                definition_version, current_step, workflow_status, workflow_config, deadline_at,
                lease_owner, lease_until)
            SELECT it."order", it."user", it.tiktok, it.start ->> 'name',
                (it.start ->> 'def_version')::integer, it.start ->> 'step', 'running',
                it.start -> 'config', coalesce(o.rts_sla_time, o.shipping_due_time), p_owner,
                now() + p_lease_ms * interval '1 millisecond'
            FROM orders o WHERE o.id = it."order"
            ON CONFLICT (order_id) WHERE workflow_status IN ('running', 'waiting', 'paused',
                'failed', 'compensating') DO NOTHING
            RETURNING id INTO cur;
            ids := ids || cur.id;
            verdicts := verdicts || CASE WHEN cur.id IS NULL THEN 'exists' ELSE 'ok' END;
        ELSE
            SELECT w.id, w.version, w.lease_owner, w.lease_until INTO cur
            FROM order_workflows w WHERE w.id = it.wf FOR UPDATE;
            ids := ids || it.wf;
            verdicts := verdicts || CASE
                WHEN cur.id IS NULL THEN 'gone'
                WHEN it.expect IS NOT NULL AND cur.version <> it.expect THEN 'stale'
                WHEN cur.lease_owner IS NOT NULL AND cur.lease_owner <> p_owner
                    AND cur.lease_until > now() THEN 'stale'
                ELSE 'ok' END;
        END IF;
        IF verdicts[array_length(verdicts, 1)] = 'ok' THEN
            IF it.effect = 'reserve' THEN
                r_n := r_n || it.n;
                r_order := r_order || it."order";
                r_user := r_user || it."user";
                r_policy := r_policy || coalesce(it.policy, 'not_tracked');
            ELSIF it.effect = 'release' THEN
                rel := rel || it."order";
            ELSIF it.effect = 'consume' THEN
                con := con || it."order";
            END IF;
        END IF;
    END LOOP;

    -- Pass 2: the effects, each set-based.
    IF array_length(r_n, 1) > 0 THEN
        WITH x AS MATERIALIZED (SELECT * FROM inventory_reserve((SELECT jsonb_agg(
                jsonb_build_object('n', a.n, 'order_id', a.o, 'user_id', a.u, 'policy', a.p)
                ORDER BY a.n) FROM unnest(r_n, r_order, r_user, r_policy) AS a(n, o, u, p)))),
            tk AS (SELECT u.i, sum(u.q)::integer AS q FROM x, unnest(x.items, x.qtys) AS u(i, q)
                GROUP BY u.i)
        SELECT (SELECT jsonb_object_agg(x.order_id::text, jsonb_build_object('outcome', x.outcome,
                'missing', x.missing)) FROM x),
            (SELECT array_agg(tk.i ORDER BY tk.i) FROM tk),
            (SELECT array_agg(tk.q ORDER BY tk.i) FROM tk)
        INTO res, take_items, take_qtys;
    END IF;
    IF array_length(rel, 1) > 0 THEN
        PERFORM inventory_settle(rel, false);
    END IF;
    IF array_length(con, 1) > 0 THEN
        PERFORM inventory_settle(con, true);
    END IF;

    -- Pass 3: each run's next state.
    FOR it IN SELECT x.*, row_number() OVER (ORDER BY x.n) AS k FROM jsonb_to_recordset(p_items)
        AS x(n integer, "order" uuid, "user" uuid, effect text, "then" jsonb, audit jsonb,
        name text, def_version integer)
    LOOP
        n := it.n;
        wf_id := ids[it.k];
        verdict := verdicts[it.k];
        outcome := NULL;
        missing := NULL;
        version := NULL;
        IF verdict <> 'ok' THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF it.effect = 'reserve' THEN
            outcome := res -> it."order"::text ->> 'outcome';
            missing := res -> it."order"::text ->> 'missing';
            t := it."then" -> outcome;
        ELSE
            t := it."then";
        END IF;
        -- Each entry gets its times: decided at started_ms, committed now.
        SELECT coalesce(jsonb_agg((h.e - 'started_ms') || jsonb_build_object(
            'started_at', to_timestamp((h.e ->> 'started_ms')::bigint / 1000.0), 'at', now(),
            'ms', greatest(0, floor(extract(epoch FROM now()) * 1000)
                - (h.e ->> 'started_ms')::bigint)) ORDER BY h.k), '[]')
        INTO hist FROM jsonb_array_elements(coalesce(t -> 'hist', '[]')) WITH ORDINALITY AS h(e, k);
        UPDATE order_workflows w SET
            workflow_name = coalesce(it.name, w.workflow_name),
            definition_version = coalesce(it.def_version, w.definition_version),
            current_step = t ->> 'step',
            action_index = (t ->> 'action')::integer,
            workflow_status = (t ->> 'status')::workflow_execution_status,
            wait_kind = t ->> 'wait',
            waiting_since = CASE WHEN t ->> 'wait' IS NULL THEN NULL
                WHEN w.wait_kind IS NOT DISTINCT FROM t ->> 'wait' THEN w.waiting_since
                ELSE now() END,
            retry_after = CASE WHEN t ->> 'due_ms' IS NULL THEN NULL
                ELSE now() + (t ->> 'due_ms')::bigint * interval '1 millisecond' END,
            attempt = (t ->> 'attempt')::integer,
            seq = (t ->> 'seq')::integer,
            step_history = CASE WHEN jsonb_array_length(w.step_history) + jsonb_array_length(hist)
                <= 200 THEN w.step_history || hist
                ELSE (SELECT jsonb_agg(e ORDER BY k) FROM jsonb_array_elements(w.step_history || hist)
                    WITH ORDINALITY AS h(e, k)
                    WHERE k > jsonb_array_length(w.step_history) + jsonb_array_length(hist) - 200)
                END,
            last_error = CASE WHEN t ? 'error' THEN t ->> 'error' ELSE w.last_error END,
            error_count = w.error_count + coalesce((t ->> 'errors_add')::integer, 0),
            compensate = coalesce((SELECT array_agg(c ORDER BY k)
                FROM jsonb_array_elements_text(t -> 'comp') WITH ORDINALITY AS x(c, k)), '{}'),
            end_status = (t ->> 'end_status')::workflow_execution_status,
            paused_from = (t ->> 'paused_from')::workflow_execution_status,
            terminal = coalesce((t ->> 'terminal')::boolean, false),
            cancel_decision = t ->> 'cancel_decision',
            pending_trigger = t ->> 'pending_trigger',
            restart_with = CASE WHEN t ->> 'final' IS NULL THEN t -> 'restart' END,
            completed_at = CASE WHEN t ->> 'final' = 'completed' THEN now() ELSE w.completed_at END,
            failed_at = CASE WHEN t ->> 'final' IN ('failed', 'cancelled') THEN now()
                ELSE w.failed_at END,
            lease_owner = CASE WHEN (t ->> 'lease')::boolean THEN p_owner END,
            lease_until = CASE WHEN (t ->> 'lease')::boolean
                THEN now() + p_lease_ms * interval '1 millisecond' END,
            version = w.version + 1
        WHERE w.id = wf_id
        RETURNING w.version INTO out_version;
        version := out_version;
        IF t ->> 'final' IS NOT NULL AND t -> 'restart' IS NOT NULL THEN
            INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name,
                definition_version, current_step, workflow_status, workflow_config, deadline_at,
                retry_after)
            SELECT w.order_id, w.user_id, w.tiktok_order_id, t -> 'restart' ->> 'name',
                -- the creator's newest version of that name, else the built-in;
                -- the engine starts it at its initial state ('')
                coalesce((SELECT max(d.version) FROM workflow_definitions d
                    WHERE d.user_id = w.user_id AND d.name = t -> 'restart' ->> 'name'), 0),
                '', 'running', t -> 'restart' -> 'config', w.deadline_at, now()
            FROM order_workflows w WHERE w.id = wf_id
            ON CONFLICT (order_id) WHERE workflow_status IN ('running', 'waiting', 'paused',
                'failed', 'compensating') DO NOTHING
            RETURNING id::text INTO outcome;
        END IF;
        IF t ->> 'order_status' IS NOT NULL THEN
            -- order_change sets the workflow status too: one write of the row.
            c_n := c_n || it.n;
            c_order := c_order || it."order";
            c_user := c_user || it."user";
            c_status := c_status || (t ->> 'order_status');
            c_wf_status := c_wf_status || (t ->> 'wf_status');
            c_step := c_step || (t ->> 'step');
            c_wf := c_wf || wf_id;
        ELSIF t ->> 'wf_status' IS NOT NULL THEN
            UPDATE orders o SET workflow_status = (t ->> 'wf_status')::workflow_status
            WHERE o.id = it."order" AND o.workflow_status IS DISTINCT FROM
                (t ->> 'wf_status')::workflow_status;
        END IF;
        IF it.audit IS NOT NULL THEN
            INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)
            VALUES (it."user", it.audit ->> 'actor', it.audit ->> 'action', 'workflow',
                wf_id::text, it.audit -> 'before', it.audit -> 'after');
        END IF;
        RETURN NEXT;
    END LOOP;

    -- Status changes the states ask for, where the state machine allows
    -- them (an order TikTok already moved on keeps its status); the
    -- workflow status is set either way.
    IF array_length(c_n, 1) > 0 THEN
        SELECT array_agg(ch.n) INTO refused
        FROM order_change((SELECT jsonb_agg(jsonb_build_object('n', c.n, 'key', c.o::text,
                'user_id', c.u, 'status', c.st, 'workflow_status', c.ws,
                'reason', 'workflow step ' || c.step, 'source', 'system', 'actor', 'workflow',
                'meta', jsonb_build_object('workflow_id', c.wf)) ORDER BY c.n)
            FROM unnest(c_n, c_order, c_user, c_status, c_wf_status, c_step, c_wf)
                AS c(n, o, u, st, ws, step, wf)), p_machine, false) ch
        WHERE ch.verdict <> 'ok';
        IF refused IS NOT NULL THEN
            UPDATE orders o SET workflow_status = c.ws::workflow_status
            FROM unnest(c_n, c_order, c_wf_status) AS c(n, o, ws)
            WHERE c.n = ANY (refused) AND o.id = c.o AND c.ws IS NOT NULL
            AND o.workflow_status IS DISTINCT FROM c.ws::workflow_status;
        END IF;
    END IF;

    -- Last, so the stock rows are locked only for the commit.
    IF take_items IS NOT NULL THEN
        PERFORM inventory_take(take_items, take_qtys);
    END IF;
END $$;
