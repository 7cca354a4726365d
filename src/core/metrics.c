/*
 * metrics: recording into a worker's counters.  Rendering lives with the
 * /metrics handler in health.c, which knows every source of figures.
 */
#include "config.h"

#include "orderflow/metrics.h"
#include "orderflow/util.h"

const int64_t metrics_bucket_us[METRICS_BUCKETS] = {
	250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000, 10000000,
};

/* Only the owning worker writes its counters (util_count). */
void
metrics_observe(struct metrics *m, int route, int status, int64_t dur_us)
{
	struct metrics_route *r;
	int b;

	if (route < 0 || route > METRICS_MAX_ROUTES)
		route = METRICS_MAX_ROUTES;
	r = &m->route[route];
	if (status < METRICS_STATUS_MIN || status > METRICS_STATUS_MAX)
		status = 500;
	util_count(&r->status[status - METRICS_STATUS_MIN], 1);
	for (b = 0; b < METRICS_BUCKETS && dur_us > metrics_bucket_us[b]; b++)
		;
	util_count(&r->bucket[b], 1);
	util_count(&r->sum_us, (unsigned long long)(dur_us > 0 ? dur_us : 0));
	util_count(&r->count, 1);
}

void
metrics_hist_observe(struct metrics_hist *h, int64_t dur_us)
{
	int b;

	for (b = 0; b < METRICS_BUCKETS && dur_us > metrics_bucket_us[b]; b++)
		;
	util_count(&h->bucket[b], 1);
	util_count(&h->sum_us, (unsigned long long)(dur_us > 0 ? dur_us : 0));
	util_count(&h->count, 1);
}
