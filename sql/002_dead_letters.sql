-- 002: dead letters are listed newest first by id (GET /api/admin/dead-letters
-- pages with before_id), so index them by id; the same partial index serves
-- the health check's count.
CREATE INDEX webhook_events_dead_id_idx ON webhook_events (id DESC) WHERE dead_at IS NOT NULL;
DROP INDEX webhook_events_dead_idx;
