-- 004: outbound actions the dashboard asks for when it changes an order.
--
-- POST /api/orders/{id}/status with sync_to_tiktok or notify_customer
-- records the action here, in the transaction of the status change; the
-- workflow engine (a later release) carries them out and marks them.

CREATE TABLE order_actions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    uuid        NOT NULL,
    user_id     uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    action      text        NOT NULL CHECK (action IN ('sync_to_tiktok', 'notify_customer')),
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    payload     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id) ON DELETE CASCADE
);
COMMENT ON TABLE order_actions IS 'Outbound actions (TikTok status sync, customer notice) waiting for the workflow engine.';

CREATE INDEX order_actions_pending_idx ON order_actions (created_at) WHERE status = 'pending';
CREATE INDEX order_actions_order_idx ON order_actions (order_id);
