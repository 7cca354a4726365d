/*
 * webhook: TikTok Shop webhook ingestion (POST /webhooks/tiktok).
 *
 * The durability contract: a 2xx means the event is committed in
 * webhook_events.  The signature is checked on the raw body, in constant
 * time, before anything is parsed; then the envelope is validated.  Events
 * that arrive on a worker while its commit is in flight wait and go
 * together in the next one (group commit): one pipeline of INSERTs and a
 * single sync, which PostgreSQL runs as one implicit transaction, so the
 * cost is one fsync per batch, not per webhook.  A duplicate (same
 * tts_notification_id, or when absent the same shop, type, order, update
 * time and status) is answered 200 and not stored again.
 *
 * Owned per worker; called by httpd (the handler), worker (lifecycle) and
 * health (metrics).
 */
#ifndef ORDERFLOW_WEBHOOK_H
#define ORDERFLOW_WEBHOOK_H

#include <stdbool.h>

struct evbuffer;
struct httpd_req;
struct pg_pool;
struct worker;
struct worker_set;
struct webhook;

void webhook_prepare(struct pg_pool *pg);
struct webhook *webhook_new(struct worker *w);
void webhook_start(struct webhook *wh);
/* Answer every waiting request 503 and stop timers (on the worker, at shutdown). */
void webhook_close(struct webhook *wh);
/* Free; its counters stay readable by other workers until then. */
void webhook_free(struct webhook *wh);

void webhook_tiktok(struct httpd_req *hr);
/* True once this worker can verify webhooks (its shop credentials are loaded); any thread. */
bool webhook_ready(const struct webhook *wh);

/* This worker's shop credentials (owned by the webhook module). */
struct shops *webhook_shops(struct webhook *wh);

/* Prometheus lines for every worker's webhook counters. */
void webhook_metrics(struct evbuffer *out, struct worker_set *s);

#endif
