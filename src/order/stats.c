/*
 * stats: the roll-up of order_stats_delta, on worker 0.
 */
#include "config.h"

#include <event2/buffer.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/stats.h"
#include "orderflow/twheel.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

/* Fold once a second: a summary then reads at most a second of deltas. */
#define STATS_INTERVAL_MS 1000
/* Deltas per call: one short transaction, even after a backlog. */
#define STATS_BATCH 20000
#define STATS_STR(x) #x
#define STATS_XSTR(x) STATS_STR(x)

struct stats {
	struct worker	*w;
	struct twheel_timer timer;
	bool		closing;
	atomic_ullong	runs, folded, failures;
};

void
stats_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "stats_rollup", "SELECT order_stats_rollup($1::integer)");
}

static void
stats_schedule(struct stats *st, int64_t ms)
{
	if (st->closing)
		return;
	twheel_add(st->w->wheel, &st->timer, worker_now_ms() + (uint64_t)ms);
}

static void
stats_on_rollup(struct pg_batch *b, void *arg)
{
	struct stats *st = arg;
	PGresult *r = pg_batch_result(b, 0);
	long long n;

	util_count(&st->runs, 1);
	if (pg_batch_error(b) == NULL && r != NULL && PQntuples(r) == 1 && PQnfields(r) == 1) {
		char *end;

		n = strtoll(PQgetvalue(r, 0, 0), &end, 10);
		if (*end != '\0' || end == PQgetvalue(r, 0, 0) || n < -1 || n > STATS_BATCH)
			n = -2;
	} else {
		n = -2;
	}
	if (n == -2) {
		util_count(&st->failures, 1);
		if (!st->closing)
			log_info("order_stats roll-up failed; retrying", "error=%s",
			    log_quote(pg_batch_error(b) ? pg_batch_error(b) : "unexpected answer"));
	} else if (n > 0) {
		util_count(&st->folded, (unsigned long long)n);
	}
	/* a full batch: more are waiting */
	stats_schedule(st, n == STATS_BATCH ? 0 : STATS_INTERVAL_MS);
}

static void
stats_on_timer(struct twheel_timer *t)
{
	struct stats *st = container_of(t, struct stats, timer);
	struct pg_batch *b = pg_batch_new(stats_on_rollup, st);

	pg_batch_add(b, true, "stats_rollup", 1, (const char *[]){ STATS_XSTR(STATS_BATCH) });
	if (pg_submit(st->w->pg, b) != PG_OK) {
		util_count(&st->failures, 1);
		stats_schedule(st, STATS_INTERVAL_MS);
	}
}

struct stats *
stats_new(struct worker *w)
{
	struct stats *st = xcalloc(1, sizeof(*st));

	st->w = w;
	twheel_timer_init(&st->timer, stats_on_timer);
	return st;
}

void
stats_start(struct stats *st)
{
	if (st->w->id == 0)
		stats_schedule(st, STATS_INTERVAL_MS);
}

void
stats_close(struct stats *st)
{
	st->closing = true;
	twheel_cancel(&st->timer);
}

void
stats_free(struct stats *st)
{
	if (st == NULL)
		return;
	stats_close(st);
	/* A call still out ended in its callback when the pool closed. */
	free(st);
}

void
stats_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long runs = 0, folded = 0, fails = 0;

	for (int i = 0; i < s->n; i++) {
		struct stats *st = s->workers[i].svc[SERVICE_STATS];

		runs += atomic_load(&st->runs);
		folded += atomic_load(&st->folded);
		fails += atomic_load(&st->failures);
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_order_stats_rollups_total Roll-ups of the list summary's counters.\n"
	    "# TYPE orderflow_order_stats_rollups_total counter\n"
	    "orderflow_order_stats_rollups_total %llu\n"
	    "# HELP orderflow_order_stats_folded_total Order changes folded into the counters.\n"
	    "# TYPE orderflow_order_stats_folded_total counter\n"
	    "orderflow_order_stats_folded_total %llu\n"
	    "# HELP orderflow_order_stats_rollup_failures_total Roll-ups that failed.\n"
	    "# TYPE orderflow_order_stats_rollup_failures_total counter\n"
	    "orderflow_order_stats_rollup_failures_total %llu\n",
	    runs, folded, fails);
}
