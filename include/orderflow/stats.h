/*
 * stats: keeps the list summary's counters (order_stats, sql/006) folded.
 *
 * Writers of orders append signed deltas to order_stats_delta through
 * triggers; a summary reads order_stats plus the deltas still there, so it
 * is exact either way, but it slows down as deltas pile up.  Worker 0 of
 * each daemon calls order_stats_rollup() every STATS_INTERVAL_MS (at once
 * again while a call folded a full batch); the function lets one session
 * at a time fold, so several daemons on one database take turns.
 *
 * Owned per worker (only worker 0's runs); called by worker (lifecycle)
 * and health (metrics).
 */
#ifndef ORDERFLOW_STATS_H
#define ORDERFLOW_STATS_H

struct evbuffer;
struct pg_pool;
struct stats;
struct worker;
struct worker_set;

void stats_prepare(struct pg_pool *pg);
struct stats *stats_new(struct worker *w);
void stats_start(struct stats *st);
void stats_close(struct stats *st);
void stats_free(struct stats *st);
void stats_metrics(struct evbuffer *out, struct worker_set *s);

#endif
