-- 006: per-creator order counts and amounts by day, for the list summary.
--
-- GET /api/orders answers with a summary of the whole filtered set.  For
-- a creator with 200,000 orders, counting them on every request reads the
-- whole creator's share of the table.  order_stats keeps, per creator, UTC
-- day of order_date, order_status and workflow_status, the number of
-- orders and their total_amount, so a summary reads a few hundred rows.
--
-- Writers never touch order_stats: a hot row (one creator, one day, one
-- status) would serialise their transactions and deadlock those that
-- touch several such rows in different orders.  Triggers append signed
-- deltas to order_stats_delta instead (in the writer's transaction), and
-- order_stats_rollup() folds them into order_stats, one caller at a time.
-- A summary reads order_stats plus the deltas not yet folded in one
-- snapshot, so it is exact whether or not the roll-up has run.

CREATE TABLE order_stats (
    user_id         uuid            NOT NULL,
    day             date            NOT NULL,
    order_status    order_status    NOT NULL,
    workflow_status workflow_status NOT NULL,
    orders          bigint          NOT NULL,
    amount          numeric         NOT NULL,
    PRIMARY KEY (user_id, day, order_status, workflow_status)
);
COMMENT ON TABLE order_stats IS 'Orders and total_amount per creator, UTC day of order_date, order_status and workflow_status; folded from order_stats_delta by order_stats_rollup().';

CREATE TABLE order_stats_delta (
    id              bigint          GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         uuid            NOT NULL,
    day             date            NOT NULL,
    order_status    order_status    NOT NULL,
    workflow_status workflow_status NOT NULL,
    orders          bigint          NOT NULL,
    amount          numeric         NOT NULL
);
COMMENT ON TABLE order_stats_delta IS 'Signed changes to order_stats appended by the triggers on orders, not yet folded in.';
CREATE INDEX order_stats_delta_user_idx ON order_stats_delta (user_id);

-- Inserts and deletes: one aggregated delta per group and statement, so a
-- COPY of 100,000 orders appends a few thousand rows, not 100,000.
CREATE FUNCTION order_stats_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_stats_delta (user_id, day, order_status, workflow_status, orders, amount)
    SELECT user_id, (order_date AT TIME ZONE 'UTC')::date, order_status, workflow_status,
           count(*), sum(total_amount)
    FROM stats_new GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$;

CREATE FUNCTION order_stats_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_stats_delta (user_id, day, order_status, workflow_status, orders, amount)
    SELECT user_id, (order_date AT TIME ZONE 'UTC')::date, order_status, workflow_status,
           -count(*), -sum(total_amount)
    FROM stats_old GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$;

-- Updates: per row, and only when a counted column changed (the WHEN
-- clause is checked without calling the function).
CREATE FUNCTION order_stats_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_stats_delta (user_id, day, order_status, workflow_status, orders, amount)
    VALUES (OLD.user_id, (OLD.order_date AT TIME ZONE 'UTC')::date, OLD.order_status,
            OLD.workflow_status, -1, -OLD.total_amount),
           (NEW.user_id, (NEW.order_date AT TIME ZONE 'UTC')::date, NEW.order_status,
            NEW.workflow_status, 1, NEW.total_amount);
    RETURN NULL;
END $$;

CREATE TRIGGER orders_stats_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS stats_new FOR EACH STATEMENT EXECUTE FUNCTION order_stats_inserted();
CREATE TRIGGER orders_stats_delete AFTER DELETE ON orders
    REFERENCING OLD TABLE AS stats_old FOR EACH STATEMENT EXECUTE FUNCTION order_stats_deleted();
CREATE TRIGGER orders_stats_update
    AFTER UPDATE OF user_id, order_date, order_status, workflow_status, total_amount ON orders
    FOR EACH ROW
    WHEN ((OLD.user_id, OLD.order_date, OLD.order_status, OLD.workflow_status, OLD.total_amount)
          IS DISTINCT FROM
          (NEW.user_id, NEW.order_date, NEW.order_status, NEW.workflow_status, NEW.total_amount))
    EXECUTE FUNCTION order_stats_updated();

-- Fold up to max_rows of the oldest deltas into order_stats; rows whose
-- count falls to zero are removed.  Returns the deltas folded, or -1 when
-- another session is rolling up (one at a time: two would lock the same
-- order_stats rows in different orders).
CREATE FUNCTION order_stats_rollup(max_rows integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    folded integer;
    zu uuid[];
    zd date[];
    zs order_status[];
    zw workflow_status[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('orderflow.order_stats_rollup')) THEN
        RETURN -1;
    END IF;
    WITH d AS (
        DELETE FROM order_stats_delta WHERE id IN
            (SELECT id FROM order_stats_delta ORDER BY id LIMIT max_rows)
        RETURNING user_id, day, order_status, workflow_status, orders, amount
    ), u AS (
        INSERT INTO order_stats AS s (user_id, day, order_status, workflow_status, orders, amount)
        SELECT user_id, day, order_status, workflow_status, sum(orders), sum(amount)
        FROM d GROUP BY 1, 2, 3, 4
        ON CONFLICT (user_id, day, order_status, workflow_status)
        DO UPDATE SET orders = s.orders + excluded.orders, amount = s.amount + excluded.amount
        RETURNING s.user_id, s.day, s.order_status, s.workflow_status, s.orders
    )
    SELECT (SELECT count(*) FROM d),
           array_agg(u.user_id) FILTER (WHERE u.orders = 0),
           array_agg(u.day) FILTER (WHERE u.orders = 0),
           array_agg(u.order_status) FILTER (WHERE u.orders = 0),
           array_agg(u.workflow_status) FILTER (WHERE u.orders = 0)
    INTO folded, zu, zd, zs, zw FROM u;
    IF zu IS NOT NULL THEN
        DELETE FROM order_stats s USING unnest(zu, zd, zs, zw) AS z(u, d, st, wf)
        WHERE s.user_id = z.u AND s.day = z.d AND s.order_status = z.st
          AND s.workflow_status = z.wf AND s.orders = 0;
    END IF;
    RETURN folded;
END $$;

-- The orders already there.
INSERT INTO order_stats (user_id, day, order_status, workflow_status, orders, amount)
SELECT user_id, (order_date AT TIME ZONE 'UTC')::date, order_status, workflow_status,
       count(*), sum(total_amount)
FROM orders GROUP BY 1, 2, 3, 4;
