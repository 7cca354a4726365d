/*
 * health: operations endpoints.
 *
 * /api/health/orders asks PostgreSQL for its figures and Redis for a PING
 * at the same time; a struct health_check collects both answers and the
 * reply goes out when the second one arrives.  Each side always answers:
 * the pool and hiredis call back even on failure or shutdown.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/health.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/proc.h"
#include "orderflow/rds.h"
#include "orderflow/service.h"
#include "orderflow/tt.h"
#include "orderflow/wf.h"
#include "orderflow/worker.h"

/* A worker whose heartbeat is older than this is stuck. */
#define HEALTH_STUCK_US (4 * WORKER_TICK_MS * 1000)

/* Order figures in one round trip; the partial indexes keep the counts cheap. */
static const char health_stats_sql[] =
    "SELECT"
    " (SELECT count(*) FROM orders"
    "   WHERE order_status IN ('pending','confirmed','processing','shipped')) AS active_orders,"
    " (SELECT count(*) FROM order_workflows"
    "   WHERE workflow_status IN ('running','waiting','paused','failed','compensating'))"
    "   AS pending_workflows,"
    " (SELECT count(*) FROM webhook_events"
    "   WHERE processed_at IS NULL AND dead_at IS NULL) AS queue_depth,"
    " (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0)::float8"
    "   FROM webhook_events WHERE processed_at IS NULL AND dead_at IS NULL) AS oldest_age,"
    " (SELECT count(*) FROM webhook_events WHERE dead_at IS NOT NULL) AS dead_letters,"
    " (SELECT id::text FROM orders ORDER BY updated_at DESC LIMIT 1) AS last_order,"
    " (SELECT count(*) FROM shops WHERE status IN ('paused', 'deauthorized')) AS paused_shops,"
    " (SELECT coalesce(json_agg(json_build_object('shop_id', tiktok_shop_id, 'status', status,"
    "   'reason', paused_reason)), '[]') FROM (SELECT * FROM shops"
    "   WHERE status IN ('paused', 'deauthorized') ORDER BY tiktok_shop_id LIMIT 20) p) AS paused_list,"
    " (SELECT count(*) FROM order_workflows WHERE retry_after <= now()) AS due_workflows,"
    " (SELECT coalesce(extract(epoch FROM now() - min(retry_after)), 0)::float8"
    "   FROM order_workflows WHERE retry_after <= now()) AS oldest_due_age,"
    " (SELECT count(*) FROM order_workflows WHERE workflow_status IN ('failed', 'paused'))"
    "   AS attention";

void
health_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "health_stats", health_stats_sql);
}

void
health_healthz(struct httpd_req *hr)
{
	static const char body[] = "{\"status\":\"ok\"}";

	httpd_reply(hr, 200, "application/json", body, sizeof(body) - 1);
}

/* Probed by load balancers many times a second: built with snprintf, not jansson. */
void
health_readyz(struct httpd_req *hr)
{
	struct worker_set *s = hr->w->set;
	char body[64 + 64 * 64], why[128] = "";
	size_t n;

	n = (size_t)snprintf(body, sizeof(body), "{\"status\":\"ready\",\"workers\":[");
	for (int i = 0; i < s->n; i++) {
		struct worker *w = &s->workers[i];
		bool pg = atomic_load(&pg_pool_stats(w->pg)->up) > 0;
		bool rd = rds_connected(w->rds);
		bool wh = service_ready(w);

		n += (size_t)snprintf(body + n, sizeof(body) - n,
		    "%s{\"id\":%d,\"postgres\":%s,\"redis\":%s,\"webhooks\":%s}", i > 0 ? "," : "",
		    i, pg ? "true" : "false", rd ? "true" : "false", wh ? "true" : "false");
		if (why[0] == '\0' && (!pg || !rd))
			snprintf(why, sizeof(why), "worker %d: %s down", i,
			    !pg && !rd ? "postgres and redis" : !pg ? "postgres" : "redis");
		else if (why[0] == '\0' && !wh)
			snprintf(why, sizeof(why), "worker %d: shop credentials not loaded", i);
	}
	n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
	if (why[0] != '\0')
		httpd_error(hr, 503, "not_ready", "%s", why);
	else
		httpd_reply(hr, 200, "application/json", body, n);
}

/* The two answers /api/health/orders waits for. */
struct health_check {
	struct httpd_req *hr;
	int		pending;	/* answers still expected */
	int64_t		pg_start, rd_start;
	json_t		*database;	/* check objects, built as answers arrive */
	json_t		*redis;
	json_t		*figures;	/* row of health_stats, or NULL */
	json_t		*paused;	/* up to 20 paused shops, or NULL */
	long long	npaused;
	double		oldest_age;
	long long	depth;
	long long	due;		/* workflow runs due now */
	double		due_age;	/* seconds the oldest of them has been due */
	long long	attention;	/* failed or paused runs */
	bool		have_engine;	/* the figures above were read */
};

static const char *
health_word(int level)
{
	return level == 0 ? "healthy" : level == 1 ? "degraded" : "unhealthy";
}

static json_t *
health_num_or_null(PGresult *r, int col)
{
	return PQgetisnull(r, 0, col) ? json_null() :
	    json_integer(strtoll(PQgetvalue(r, 0, col), NULL, 10));
}

static void health_finish(struct health_check *hc);

static void
health_on_stats(struct pg_batch *b, void *arg)
{
	struct health_check *hc = arg;
	struct worker_set *s = hc->hr->w->set;
	PGresult *r = pg_batch_result(b, 0);
	double ms = (double)(util_mono_us() - hc->pg_start) / 1000.0;
	int up = 0, total;

	/* pool_size needs a restart, so our own config holds every worker's. */
	total = (int)(hc->hr->w->cfg->postgres.pool_size * s->n);
	for (int i = 0; i < s->n; i++)
		up += atomic_load(&pg_pool_stats(s->workers[i].pg)->up);
	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1 || PQnfields(r) != 11) {
		hc->database = json_pack("{s:s,s:f,s:i,s:i,s:s}", "status", "unhealthy",
		    "latency_ms", ms, "connections_up", up, "connections_total", total, "message",
		    pg_batch_error(b) != NULL ? pg_batch_error(b) : "unexpected answer");
	} else {
		hc->database = json_pack("{s:s,s:f,s:i,s:i}", "status", up > 0 ? "healthy" :
		    "degraded", "latency_ms", ms, "connections_up", up, "connections_total", total);
		hc->depth = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		hc->oldest_age = strtod(PQgetvalue(r, 0, 3), NULL);
		hc->npaused = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
		hc->paused = json_loads(PQgetvalue(r, 0, 7), 0, NULL);
		hc->due = strtoll(PQgetvalue(r, 0, 8), NULL, 10);
		hc->due_age = strtod(PQgetvalue(r, 0, 9), NULL);
		hc->attention = strtoll(PQgetvalue(r, 0, 10), NULL, 10);
		hc->have_engine = true;
		hc->figures = json_pack("{s:o,s:o,s:o,s:o,s:o}",
		    "activeOrders", health_num_or_null(r, 0),
		    "pendingWorkflows", health_num_or_null(r, 1),
		    "queueDepth", health_num_or_null(r, 2),
		    "deadLetters", health_num_or_null(r, 4),
		    "lastProcessedOrder", PQgetisnull(r, 0, 5) ? json_null() :
		    json_string(PQgetvalue(r, 0, 5)));
	}
	health_finish(hc);
}

static void
health_redis_result(struct health_check *hc, const char *error)
{
	struct worker_set *s = hc->hr->w->set;
	double ms = (double)(util_mono_us() - hc->rd_start) / 1000.0;
	int connected = 0;

	for (int i = 0; i < s->n; i++)
		connected += rds_connected(s->workers[i].rds);
	if (error != NULL)
		hc->redis = json_pack("{s:s,s:n,s:i,s:i,s:s}", "status", "unhealthy", "latency_ms",
		    "workers_connected", connected, "workers", s->n, "message", error);
	else
		hc->redis = json_pack("{s:s,s:f,s:i,s:i}", "status",
		    connected == s->n ? "healthy" : "degraded", "latency_ms", ms,
		    "workers_connected", connected, "workers", s->n);
}

static void
health_on_ping(struct redisReply *reply, void *arg)
{
	struct health_check *hc = arg;

	health_redis_result(hc, reply == NULL ? "connection lost" :
	    reply->type == REDIS_REPLY_ERROR ? reply->str : NULL);
	health_finish(hc);
}

/*
 * Every worker ticking on time means every loop is free to run its work;
 * a due workflow run older than workflow.max_due_age means the engine is
 * behind (degraded).
 */
static json_t *
health_engine_check(struct health_check *hc, int *level)
{
	struct worker_set *s = hc->hr->w->set;
	int64_t now = util_mono_us(), max_lag = 0;
	double max_age = (double)hc->hr->w->cfg->workflow.max_due_age / 1000.0;
	int alive = 0;
	json_t *doc;

	for (int i = 0; i < s->n; i++) {
		int64_t age = now - atomic_load(&s->workers[i].heartbeat_us);
		int64_t lag = atomic_load(&s->workers[i].lag_us);

		alive += age < HEALTH_STUCK_US;
		if (lag > max_lag)
			max_lag = lag;
	}
	*level = alive == s->n ? 0 : alive > 0 ? 1 : 2;
	if (*level == 0 && hc->have_engine && hc->due_age > max_age)
		*level = 1;
	doc = json_pack("{s:s,s:i,s:i,s:f,s:I,s:I,s:f}", "status", health_word(*level),
	    "workers_alive", alive, "workers", s->n, "max_loop_lag_ms", (double)max_lag / 1000.0,
	    "parked_runs", (json_int_t)wf_parked(s), "runs_in_memory", (json_int_t)wf_active(s),
	    "max_due_age_seconds", max_age);
	json_object_set_new(doc, "due_runs", hc->have_engine ? json_integer(hc->due) : json_null());
	json_object_set_new(doc, "oldest_due_age_seconds", hc->have_engine ?
	    json_real(hc->due_age) : json_null());
	json_object_set_new(doc, "needs_attention", hc->have_engine ? json_integer(hc->attention) :
	    json_null());
	if (alive < s->n)
		json_object_set_new(doc, "message", json_sprintf("%d of %d workers are not "
		    "ticking", s->n - alive, s->n));
	else if (*level == 1)
		json_object_set_new(doc, "message", json_sprintf("%lld workflow runs are due, the "
		    "oldest for %.0f s (workflow.max_due_age is %.0f s)", hc->due, hc->due_age,
		    max_age));
	return doc;
}

static json_t *
health_queue_check(struct health_check *hc, int *level)
{
	const struct config *cfg = hc->hr->w->cfg;

	if (hc->figures == NULL) {
		*level = 1;
		return json_pack("{s:s,s:n,s:n,s:I,s:f,s:s}", "status", "degraded", "depth",
		    "oldest_age_seconds", "max_depth", (json_int_t)cfg->health.max_queue_depth,
		    "max_age_seconds", (double)cfg->health.max_queue_age / 1000.0, "message",
		    "queue depth unknown: database unavailable");
	}
	*level = hc->depth > cfg->health.max_queue_depth ||
	    hc->oldest_age * 1000.0 > (double)cfg->health.max_queue_age;
	return json_pack("{s:s,s:I,s:f,s:I,s:f}", "status", health_word(*level), "depth",
	    (json_int_t)hc->depth, "oldest_age_seconds", hc->oldest_age, "max_depth",
	    (json_int_t)cfg->health.max_queue_depth, "max_age_seconds",
	    (double)cfg->health.max_queue_age / 1000.0);
}

/* The TikTok integration: degraded while a breaker is not closed or a shop is paused. */
static json_t *
health_tiktok_check(struct health_check *hc, int *level)
{
	const char *breaker = tt_breaker_summary(hc->hr->w->set);
	json_t *paused = hc->paused != NULL ? hc->paused : json_null();

	hc->paused = NULL;
	*level = strcmp(breaker, "closed") != 0 || hc->npaused > 0;
	return json_pack("{s:s,s:s,s:I,s:o,s:I}", "status", health_word(*level), "breaker",
	    breaker, "pausedShops", (json_int_t)hc->npaused, "paused", paused,
	    "eventsInMemory", (json_int_t)proc_in_memory(hc->hr->w->set));
}

static int
health_level_of(json_t *check)
{
	const char *st = json_string_value(json_object_get(check, "status"));

	return st == NULL ? 2 : strcmp(st, "healthy") == 0 ? 0 : strcmp(st, "degraded") == 0 ? 1 : 2;
}

static void
health_finish(struct health_check *hc)
{
	int engine_level, queue_level, tiktok_level, overall;
	json_t *engine, *queue, *tiktok, *doc;
	char ts[32];

	if (--hc->pending > 0)
		return;
	engine = health_engine_check(hc, &engine_level);
	queue = health_queue_check(hc, &queue_level);
	tiktok = health_tiktok_check(hc, &tiktok_level);
	/* Without the database nothing is durable: unhealthy.  Anything else: degraded. */
	overall = health_level_of(hc->database) == 2 ? 2 :
	    (health_level_of(hc->database) | health_level_of(hc->redis) | engine_level |
	    queue_level | tiktok_level) != 0 ? 1 : 0;
	if (hc->figures == NULL)
		hc->figures = json_pack("{s:n,s:n,s:n,s:n,s:n}", "activeOrders", "pendingWorkflows",
		    "queueDepth", "deadLetters", "lastProcessedOrder");
	util_rfc3339(ts, sizeof(ts), util_wall_ms());
	doc = json_pack("{s:s,s:s,s:{s:o,s:o,s:o,s:o,s:o},s:o}", "status", health_word(overall),
	    "timestamp", ts, "checks", "database", hc->database, "redis", hc->redis,
	    "workflowEngine", engine, "messageQueue", queue, "tiktokShop", tiktok,
	    "metrics", hc->figures);
	httpd_reply_json(hc->hr, overall == 2 ? 503 : 200, doc);
	free(hc);
}

void
health_orders(struct httpd_req *hr)
{
	struct health_check *hc = xcalloc(1, sizeof(*hc));
	struct pg_batch *b;

	hc->hr = hr;
	hc->pending = 2;
	hc->pg_start = hc->rd_start = util_mono_us();
	b = pg_batch_new(health_on_stats, hc);
	pg_batch_add(b, true, "health_stats", 0, NULL);
	switch (pg_submit(hr->w->pg, b)) {
	case PG_OK:
		break;
	case PG_EDOWN:
	case PG_EFULL:
		hc->database = json_pack("{s:s,s:n,s:i,s:I,s:s}", "status", "unhealthy",
		    "latency_ms", "connections_up", 0, "connections_total",
		    (json_int_t)(hr->w->cfg->postgres.pool_size * hr->w->set->n), "message",
		    "no connection to PostgreSQL");
		hc->pending--;
		break;
	}
	if (!rds_command(hr->w->rds, health_on_ping, hc, "PING")) {
		health_redis_result(hc, "not connected");
		health_finish(hc);
	}
}

/* Prometheus text, summed over workers. */
static void
health_metrics_http(struct evbuffer *out, struct worker_set *s)
{
	evbuffer_add_printf(out, "# HELP orderflow_http_requests_total HTTP requests answered.\n"
	    "# TYPE orderflow_http_requests_total counter\n");
	for (int r = 0; r <= METRICS_MAX_ROUTES; r++) {
		if (r >= httpd_route_count() && r != METRICS_MAX_ROUTES)
			continue;
		for (int st = METRICS_STATUS_MIN; st <= METRICS_STATUS_MAX; st++) {
			unsigned long long n = 0;

			for (int i = 0; i < s->n; i++)
				n += atomic_load_explicit(&s->workers[i].metrics.route[r].status[st -
				    METRICS_STATUS_MIN], memory_order_relaxed);
			if (n > 0)
				evbuffer_add_printf(out, "orderflow_http_requests_total{route=\"%s\","
				    "code=\"%d\"} %llu\n", httpd_route_pattern(r == METRICS_MAX_ROUTES ?
				    -1 : r), st, n);
		}
	}
	evbuffer_add_printf(out, "# HELP orderflow_http_request_duration_seconds Time to answer.\n"
	    "# TYPE orderflow_http_request_duration_seconds histogram\n");
	for (int r = 0; r <= METRICS_MAX_ROUTES; r++) {
		const char *name = httpd_route_pattern(r == METRICS_MAX_ROUTES ? -1 : r);
		unsigned long long cum = 0, sum = 0, count = 0;

		if (r >= httpd_route_count() && r != METRICS_MAX_ROUTES)
			continue;
		for (int b = 0; b <= METRICS_BUCKETS; b++) {
			for (int i = 0; i < s->n; i++)
				cum += atomic_load_explicit(&s->workers[i].metrics.route[r].bucket[b],
				    memory_order_relaxed);
			if (b < METRICS_BUCKETS)
				evbuffer_add_printf(out, "orderflow_http_request_duration_seconds_bucket"
				    "{route=\"%s\",le=\"%g\"} %llu\n", name,
				    (double)metrics_bucket_us[b] / 1e6, cum);
			else
				evbuffer_add_printf(out, "orderflow_http_request_duration_seconds_bucket"
				    "{route=\"%s\",le=\"+Inf\"} %llu\n", name, cum);
		}
		for (int i = 0; i < s->n; i++) {
			sum += atomic_load(&s->workers[i].metrics.route[r].sum_us);
			count += atomic_load(&s->workers[i].metrics.route[r].count);
		}
		evbuffer_add_printf(out, "orderflow_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
		    "orderflow_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
		    (double)sum / 1e6, name, count);
	}
}

static void
health_metrics_backends(struct evbuffer *out, struct worker *self)
{
	struct worker_set *s = self->set;
	long long up = 0, busy = 0, connecting = 0, waiting = 0, total = 0;
	unsigned long long batches = 0, errors = 0;

	for (int i = 0; i < s->n; i++) {
		const struct pg_stats *st = pg_pool_stats(s->workers[i].pg);

		up += atomic_load(&st->up);
		busy += atomic_load(&st->busy);
		connecting += atomic_load(&st->connecting);
		waiting += atomic_load(&st->waiting);
		batches += atomic_load(&st->batches);
		errors += atomic_load(&st->errors);
	}
	/* pool_size needs a restart, so our own config holds every worker's. */
	total = self->cfg->postgres.pool_size * s->n;
	evbuffer_add_printf(out,
	    "# HELP orderflow_pg_connections PostgreSQL pool connections by state.\n"
	    "# TYPE orderflow_pg_connections gauge\n"
	    "orderflow_pg_connections{state=\"up\"} %lld\n"
	    "orderflow_pg_connections{state=\"connecting\"} %lld\n"
	    "orderflow_pg_connections{state=\"down\"} %lld\n"
	    "# HELP orderflow_pg_busy_connections Connections running a query.\n"
	    "# TYPE orderflow_pg_busy_connections gauge\n"
	    "orderflow_pg_busy_connections %lld\n"
	    "# HELP orderflow_pg_wait_queue Query batches waiting for a connection.\n"
	    "# TYPE orderflow_pg_wait_queue gauge\n"
	    "orderflow_pg_wait_queue %lld\n"
	    "# HELP orderflow_pg_queries_total Query batches completed.\n"
	    "# TYPE orderflow_pg_queries_total counter\n"
	    "orderflow_pg_queries_total %llu\n"
	    "# HELP orderflow_pg_errors_total Query batches that failed.\n"
	    "# TYPE orderflow_pg_errors_total counter\n"
	    "orderflow_pg_errors_total %llu\n"
	    "# HELP orderflow_redis_connected Redis connection up, per worker.\n"
	    "# TYPE orderflow_redis_connected gauge\n",
	    up, connecting, total - up - connecting, busy, waiting, batches, errors);
	for (int i = 0; i < s->n; i++)
		evbuffer_add_printf(out, "orderflow_redis_connected{worker=\"%d\"} %d\n", i,
		    rds_connected(s->workers[i].rds) ? 1 : 0);
	evbuffer_add_printf(out,
	    "# HELP orderflow_workers Event-loop worker threads.\n"
	    "# TYPE orderflow_workers gauge\n"
	    "orderflow_workers %d\n"
	    "# HELP orderflow_uptime_seconds Seconds since start.\n"
	    "# TYPE orderflow_uptime_seconds gauge\n"
	    "orderflow_uptime_seconds %.3f\n",
	    s->n, (double)(util_mono_us() - s->start_mono_us) / 1e6);
}

void
health_metrics(struct httpd_req *hr)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	health_metrics_http(out, hr->w->set);
	health_metrics_backends(out, hr->w);
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].metrics != NULL)
			service_table[i].metrics(out, hr->w->set);
	len = evbuffer_get_length(out);
	text = xmalloc(len);
	evbuffer_remove(out, text, len);
	evbuffer_free(out);
	httpd_reply(hr, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}
