-- 005: bulk status changes from the dashboard API.
--
-- POST /api/orders/bulk/status records the batch, then changes its orders
-- in transactions of batch_size orders; each order's outcome is kept for
-- GET /api/orders/bulk/{batch_id}.

CREATE TABLE bulk_batches (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid         NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    target_status order_status NOT NULL,
    reason        text         CHECK (char_length(reason) <= 255),
    batch_size    integer      NOT NULL CHECK (batch_size BETWEEN 1 AND 1000),
    total         integer      NOT NULL CHECK (total BETWEEN 1 AND 10000),
    processed     integer      NOT NULL DEFAULT 0 CHECK (processed >= 0),
    failed        integer      NOT NULL DEFAULT 0 CHECK (failed >= 0),
    state         text         NOT NULL DEFAULT 'running'
                               CHECK (state IN ('running', 'done', 'interrupted')),
    created_at    timestamptz  NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
COMMENT ON TABLE bulk_batches IS 'Bulk status changes: target, progress and state of each batch.';

CREATE INDEX bulk_batches_user_idx ON bulk_batches (user_id, created_at DESC);

CREATE TABLE bulk_batch_items (
    batch_id   uuid    NOT NULL REFERENCES bulk_batches (id) ON DELETE CASCADE,
    n          integer NOT NULL CHECK (n >= 1),
    order_key  text    NOT NULL CHECK (char_length(order_key) BETWEEN 1 AND 64),
    order_id   uuid,
    ok         boolean NOT NULL,
    error      text,
    PRIMARY KEY (batch_id, n)
);
COMMENT ON TABLE bulk_batch_items IS 'Outcome of each order id of a bulk batch, in request order.';
