-- 007: the order write path (src/order/ostore.c).
--
-- Every change of an order's status goes through order_change (people
-- through the API, one order or a bulk chunk; the workflow engine), and
-- every status history row and order audit row is written by order_log
-- (order_change, and the TikTok snapshots of src/order/apply.c).  The
-- state machine is not written here: the daemon hands it over as JSON
-- ({"pending":["confirmed","cancelled"],...}, from the one table in
-- src/order/order.c), so there is no second copy to drift.

-- History and audit rows of a set of changes.  Each element:
--   order_id, user_id          the order
--   prev_status, new_status    a history row when new_status is set and differs
--   reason, changed_by, source, meta    order_status_history columns
--   actor, action, before, after        an audit_log row when action is set
CREATE FUNCTION order_log(p jsonb) RETURNS bigint LANGUAGE sql AS $$
    WITH c AS (
        SELECT * FROM jsonb_to_recordset(p) AS x(order_id uuid, user_id uuid,
            prev_status order_status, new_status order_status, reason text, changed_by uuid,
            source text, meta jsonb, actor text, action text, before jsonb, after jsonb)
    ), h AS (
        INSERT INTO order_status_history (order_id, user_id, previous_status, new_status,
            status_reason, changed_by, change_source, metadata)
        SELECT order_id, user_id, prev_status, new_status, left(reason, 255), changed_by,
            coalesce(source, 'system'), meta
        FROM c WHERE new_status IS NOT NULL AND new_status IS DISTINCT FROM prev_status
        RETURNING 1
    ), a AS (
        INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)
        SELECT user_id, actor, action, 'order', order_id::text, before, after
        FROM c WHERE action IS NOT NULL
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM h) + (SELECT count(*) FROM a)
$$;
COMMENT ON FUNCTION order_log(jsonb) IS 'Writes the status history and audit rows of a set of order changes; the only writer of either for orders.';

-- Status changes of a set of orders, each judged on its own:
--   not_found   no order of user_id has that UUID or TikTok order id
--   duplicate   the same order appears earlier in the set
--   stale       version is given and is not the order's
--   illegal     p_machine does not let the order's status become status
--   ok          changed: version + 1, shipped/delivered dates, history,
--               audit, and one order_actions row per name in actions
-- Each element: n (its place), key, user_id, status, version (or null),
-- reason, source, actor, changed_by, meta (history metadata, merged into
-- the audit "after"), actions (text[]), workflow_status (or null: the
-- workflow engine sets it with the status, in the same row write).  Rows come back in n order; with
-- p_with_order the changed order's row comes back as JSON.
CREATE FUNCTION order_change(p_items jsonb, p_machine jsonb, p_with_order boolean)
RETURNS TABLE (n integer, key text, verdict text, order_id uuid, user_id uuid,
    tiktok_order_id text, prev_status order_status, version integer, allowed jsonb,
    order_doc jsonb, actions jsonb, logged bigint)
LANGUAGE sql AS $$
    WITH req AS (
        SELECT * FROM jsonb_to_recordset(p_items) AS x(n integer, key text, user_id uuid,
            status order_status, version integer, reason text, source text, actor text,
            changed_by uuid, meta jsonb, actions text[], workflow_status workflow_status)
    ), m AS (
        SELECT req.*, o.id AS oid, o.tiktok_order_id AS tid, o.order_status AS prev,
            o.version AS cur
        FROM req LEFT JOIN LATERAL (
            SELECT x.id, x.tiktok_order_id, x.order_status, x.version FROM orders x
            WHERE x.user_id = req.user_id AND (x.id = CASE WHEN req.key ~
                '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$' THEN req.key::uuid END
                OR x.tiktok_order_id = req.key)
            LIMIT 1 FOR UPDATE) o ON true
    ), j AS (
        SELECT m.*, CASE WHEN m.oid IS NULL THEN 'not_found'
            WHEN row_number() OVER (PARTITION BY m.oid ORDER BY m.n) > 1 THEN 'duplicate'
            WHEN m.version IS NOT NULL AND m.version <> m.cur THEN 'stale'
            WHEN NOT coalesce((p_machine -> m.prev::text) ? m.status::text, false) THEN 'illegal'
            ELSE 'ok' END AS verdict
        FROM m
    ), up AS (
        -- What the steps below need of j comes back with the row: a join of
        -- two CTEs (estimated at one row each) would be quadratic.
        UPDATE orders x SET order_status = j.status, version = x.version + 1,
            workflow_status = coalesce(j.workflow_status, x.workflow_status),
            shipped_date = CASE WHEN j.status = 'shipped'
                THEN coalesce(x.shipped_date, now()) ELSE x.shipped_date END,
            delivered_date = CASE WHEN j.status = 'delivered'
                THEN coalesce(x.delivered_date, now()) ELSE x.delivered_date END
        FROM j WHERE x.id = j.oid AND j.verdict = 'ok'
        RETURNING x AS row, j.n, j.key, j.prev, j.cur, j.reason, j.changed_by, j.source,
            j.meta, j.actor, j.actions
    ), lg AS (
        SELECT order_log(coalesce(jsonb_agg(jsonb_build_object('order_id', (up.row).id,
            'user_id', (up.row).user_id, 'prev_status', up.prev,
            'new_status', (up.row).order_status, 'reason', up.reason,
            'changed_by', up.changed_by, 'source', up.source, 'meta', up.meta,
            'actor', up.actor, 'action', 'order.status_changed',
            'before', jsonb_build_object('order_status', up.prev, 'version', up.cur),
            'after', jsonb_build_object('order_status', (up.row).order_status,
                'version', (up.row).version, 'reason', up.reason) || coalesce(up.meta, '{}'))),
            '[]')) AS logged
        FROM up
    ), wk AS (
        -- A cancelled order's live workflow must compensate: wake it (sql/009).
        UPDATE order_workflows w SET retry_after = now()
        FROM up WHERE w.order_id = (up.row).id AND (up.row).order_status = 'cancelled'
        AND w.workflow_status::text IN ('running', 'waiting', 'paused', 'failed')
        RETURNING 1
    ), ac AS (
        INSERT INTO order_actions (order_id, user_id, action, payload)
        SELECT (up.row).id, (up.row).user_id, a, jsonb_build_object('status',
            (up.row).order_status, 'reason', up.reason)
        FROM up CROSS JOIN unnest(up.actions) a
        RETURNING 1
    ), cnt AS (
        -- (ac runs without being read: a data-modifying CTE always does)
        SELECT (SELECT lg.logged FROM lg) + (SELECT count(*) FROM wk) AS logged
    )
    SELECT up.n, up.key, 'ok', (up.row).id, (up.row).user_id, (up.row).tiktok_order_id,
        up.prev, (up.row).version, p_machine -> up.prev::text,
        CASE WHEN p_with_order THEN to_jsonb(up.row) END,
        coalesce((SELECT jsonb_agg(a ORDER BY a) FROM unnest(up.actions) a), '[]'),
        cnt.logged
    FROM up, cnt
    UNION ALL
    SELECT j.n, j.key, j.verdict, j.oid, j.user_id, j.tid, j.prev, j.cur,
        p_machine -> j.prev::text, NULL, '[]', cnt.logged
    FROM j, cnt WHERE j.verdict <> 'ok'
    ORDER BY 1
$$;
COMMENT ON FUNCTION order_change(jsonb, jsonb, boolean) IS 'The one write path of order status changes by people and the workflow engine: state machine, version, history, audit, queued actions.';
