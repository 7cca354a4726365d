-- 013: raw webhook bodies are kept only for webhook.retention.
--
-- A body carries the buyer's personal data and is read by nothing once its
-- event is processed; the row stays, since it deduplicates redeliveries.
-- The partial index holds only the rows still to be purged, so the sweep
-- never reads the purged ones (its build locks out writes to the table
-- while it runs, once).
ALTER TABLE webhook_events ALTER COLUMN raw_body DROP NOT NULL;
COMMENT ON COLUMN webhook_events.raw_body IS
    'Verbatim body; NULL once processed and older than webhook.retention (dead letters keep it).';
CREATE INDEX webhook_events_retain_idx ON webhook_events (received_at)
    WHERE raw_body IS NOT NULL AND processed_at IS NOT NULL AND dead_at IS NULL;
