/*
 * metrics: per-worker request counters and latency histograms.
 *
 * Each worker writes only its own struct metrics (relaxed atomics, no
 * locks); /metrics sums every worker's on demand.  Called by httpd (one
 * observation per answered request) and health (rendering).
 */
#ifndef ORDERFLOW_METRICS_H
#define ORDERFLOW_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

/* Upper bounds of the latency buckets, in microseconds (+Inf is implied). */
#define METRICS_BUCKETS 14
extern const int64_t metrics_bucket_us[METRICS_BUCKETS];

/* Routes are counted by index into the route table; the last slot is "unmatched". */
#define METRICS_MAX_ROUTES 96
#define METRICS_STATUS_MIN 100
#define METRICS_STATUS_MAX 599

struct metrics_route {
	atomic_ullong	status[METRICS_STATUS_MAX - METRICS_STATUS_MIN + 1];
	atomic_ullong	bucket[METRICS_BUCKETS + 1];	/* last is +Inf */
	atomic_ullong	sum_us;
	atomic_ullong	count;
};

/* A latency histogram on its own (the same buckets). */
struct metrics_hist {
	atomic_ullong	bucket[METRICS_BUCKETS + 1];	/* last is +Inf */
	atomic_ullong	sum_us;
	atomic_ullong	count;
};

struct metrics {
	struct metrics_route route[METRICS_MAX_ROUTES + 1];
};

/* Record one duration in h (only its owner writes it). */
void metrics_hist_observe(struct metrics_hist *h, int64_t dur_us);

/* Record one answered request on route (METRICS_MAX_ROUTES = unmatched). */
void metrics_observe(struct metrics *m, int route, int status, int64_t dur_us);

#endif
