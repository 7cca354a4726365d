/*
 * poll: polling reconciliation ("dual sync") with TikTok Shop.
 *
 * Webhooks can be lost, so every tiktok.sync_interval each worker walks
 * the active shops it owns (worker_owner of the TikTok shop id), one at a
 * time: Search Orders for update_time in [cursor - sync_margin, now),
 * oldest first, page by page, each page applied through the same
 * idempotent statement as webhook events (apply), then the shop's cursor
 * (shops.sync_cursor) moves to the end of the window.  A shop's first
 * window reaches back tiktok.sync_lookback.  A failed run leaves the
 * cursor where it was, so the next run covers the gap; the lag (now minus
 * the oldest cursor) is a metric.
 *
 * Owned per worker; called by worker (lifecycle) and health (metrics).
 */
#ifndef ORDERFLOW_POLL_H
#define ORDERFLOW_POLL_H

struct config;
struct evbuffer;
struct pg_pool;
struct poll;
struct worker;
struct worker_set;

void poll_prepare(struct pg_pool *pg);
struct poll *poll_new(struct worker *w);
void poll_start(struct poll *pl);
void poll_reconfigure(struct poll *pl, const struct config *cfg);
void poll_close(struct poll *pl);
void poll_free(struct poll *pl);
void poll_metrics(struct evbuffer *out, struct worker_set *s);
/* Snapshots written by polling: applied, stale, unchanged (for proc_metrics). */
void poll_synced(struct worker_set *s, unsigned long long v[3]);

#endif
