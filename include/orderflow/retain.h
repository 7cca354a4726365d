/*
 * retain: raw webhook bodies are kept only for webhook.retention.
 *
 * A body holds the buyer's personal data; once its event is processed
 * nothing reads it again.  Worker 0 of each daemon clears the raw_body of
 * events processed and received longer than webhook.retention ago, in
 * batches of RETAIN_BATCH (FOR UPDATE SKIP LOCKED, so daemons share the
 * work), every minute (or half the retention, if shorter) and at once
 * again while a batch was full.  The rows stay: they are what deduplicates TikTok's redeliveries.
 * Dead letters keep their bodies until replayed and processed.
 *
 * Owned per worker (only worker 0's runs); called by worker (lifecycle)
 * and health (metrics).
 */
#ifndef ORDERFLOW_RETAIN_H
#define ORDERFLOW_RETAIN_H

struct evbuffer;
struct pg_pool;
struct retain;
struct worker;
struct worker_set;

void retain_prepare(struct pg_pool *pg);
struct retain *retain_new(struct worker *w);
void retain_start(struct retain *r);
void retain_close(struct retain *r);
void retain_free(struct retain *r);
void retain_metrics(struct evbuffer *out, struct worker_set *s);

#endif
