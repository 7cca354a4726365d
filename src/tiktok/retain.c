/*
 * retain: clearing the raw bodies of old processed webhook events.
 */
#include "config.h"

#include <event2/buffer.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/retain.h"
#include "orderflow/twheel.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

/* Look once a minute (retention is counted in days), or twice per retention when shorter. */
#define RETAIN_INTERVAL_MS 60000
#define RETAIN_INTERVAL_MIN_MS 1000
/* Rows per statement: one short transaction, even after a backlog. */
#define RETAIN_BATCH 1000

/* The partial index of sql/013 serves this; it shrinks as bodies go. */
static const char retain_sql[] =
    "WITH c AS (SELECT id FROM webhook_events WHERE raw_body IS NOT NULL"
    "  AND processed_at IS NOT NULL AND dead_at IS NULL"
    "  AND received_at < now() - $1::bigint * interval '1 millisecond'"
    "  ORDER BY received_at LIMIT $2::integer FOR UPDATE SKIP LOCKED)"
    " UPDATE webhook_events e SET raw_body = NULL FROM c WHERE e.id = c.id";

struct retain {
	struct worker	*w;
	struct twheel_timer timer;
	bool		closing;
	atomic_ullong	purged, failures;
};

void
retain_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "retain_purge", retain_sql);
}

static int64_t
retain_interval(const struct retain *r)
{
	int64_t half = r->w->cfg->webhook.retention / 2;

	if (half <= 0 || half > RETAIN_INTERVAL_MS)
		return RETAIN_INTERVAL_MS;
	return half < RETAIN_INTERVAL_MIN_MS ? RETAIN_INTERVAL_MIN_MS : half;
}

static void
retain_schedule(struct retain *r, int64_t ms)
{
	if (!r->closing)
		twheel_add(r->w->wheel, &r->timer, worker_now_ms() + (uint64_t)ms);
}

static void
retain_on_purge(struct pg_batch *b, void *arg)
{
	struct retain *r = arg;
	PGresult *res = pg_batch_result(b, 0);
	long long n = res != NULL && pg_batch_error(b) == NULL ? strtoll(PQcmdTuples(res), NULL, 10) :
	    -1;

	if (n < 0) {
		util_count(&r->failures, 1);
		if (!r->closing)
			log_info("webhook body purge failed; retrying", "error=%s",
			    log_quote(pg_batch_error(b) ? pg_batch_error(b) : "no answer"));
	} else if (n > 0) {
		util_count(&r->purged, (unsigned long long)n);
		log_debug("webhook bodies purged", "count=%lld", n);
	}
	/* A full batch: more are waiting. */
	retain_schedule(r, n == RETAIN_BATCH ? 0 : retain_interval(r));
}

static void
retain_on_timer(struct twheel_timer *t)
{
	struct retain *r = container_of(t, struct retain, timer);
	int64_t keep = r->w->cfg->webhook.retention;
	char ms[24], batch[16];
	struct pg_batch *b;

	if (keep == 0) {	/* kept for ever: look again, the config may change */
		retain_schedule(r, retain_interval(r));
		return;
	}
	snprintf(ms, sizeof(ms), "%lld", (long long)keep);
	snprintf(batch, sizeof(batch), "%d", RETAIN_BATCH);
	b = pg_batch_new(retain_on_purge, r);
	pg_batch_add(b, true, "retain_purge", 2, (const char *[]){ ms, batch });
	if (pg_submit(r->w->pg, b) != PG_OK) {
		util_count(&r->failures, 1);
		retain_schedule(r, retain_interval(r));
	}
}

struct retain *
retain_new(struct worker *w)
{
	struct retain *r = xcalloc(1, sizeof(*r));

	r->w = w;
	twheel_timer_init(&r->timer, retain_on_timer);
	return r;
}

void
retain_start(struct retain *r)
{
	/* Soon after start, so a restart does not wait a minute. */
	if (r->w->id == 0)
		retain_schedule(r, RETAIN_INTERVAL_MIN_MS);
}

void
retain_close(struct retain *r)
{
	r->closing = true;
	twheel_cancel(&r->timer);
}

void
retain_free(struct retain *r)
{
	if (r == NULL)
		return;
	retain_close(r);
	free(r);
}

void
retain_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long purged = 0, fails = 0;

	for (int i = 0; i < s->n; i++) {
		struct retain *r = s->workers[i].svc[SERVICE_RETAIN];

		purged += atomic_load(&r->purged);
		fails += atomic_load(&r->failures);
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_webhook_bodies_purged_total Raw webhook bodies cleared after "
	    "webhook.retention.\n"
	    "# TYPE orderflow_webhook_bodies_purged_total counter\n"
	    "orderflow_webhook_bodies_purged_total %llu\n"
	    "# HELP orderflow_webhook_purge_failures_total Purge statements that failed.\n"
	    "# TYPE orderflow_webhook_purge_failures_total counter\n"
	    "orderflow_webhook_purge_failures_total %llu\n", purged, fails);
}
