/*
 * service: the table of per-worker services (nginx's module array).
 *
 * Each row is one module that lives on every worker: its prepared
 * statements, its instance (made on the main thread before the threads
 * start, kept in w->svc[id]), and its hooks.  The worker walks the table
 * and names no module:
 *
 *   prepare       register statements with the worker's pool (before it starts)
 *   create        make the worker's instance (NULL: a module without state)
 *   ready         whether the worker can serve (readyz, and the start-up
 *                 wait before READY=1); NULL counts as ready
 *   start         on the worker's thread, after the pool and Redis started
 *   reconfigure   on the worker's thread, with a reloaded config
 *   drain         on the worker's thread when a drain begins: end what
 *                 would otherwise stay open (streams)
 *   close         on the worker's thread once the loop ended, in reverse
 *                 table order, before the pool and Redis close: drop what
 *                 waits, refuse new work
 *   destroy       on the main thread after every worker thread ended,
 *                 in reverse table order
 *   metrics       Prometheus text over every worker (any thread)
 *   order_changed an order changed and committed (on its owner worker)
 *
 * A new module adds its id below and one row in service.c.
 */
#ifndef ORDERFLOW_SERVICE_H
#define ORDERFLOW_SERVICE_H

#include <stdbool.h>

struct config;
struct evbuffer;
struct order_change;
struct pg_pool;
struct worker;
struct worker_set;

/* The services, in table order (later ones may use earlier ones). */
enum service_id {
	SERVICE_WEBHOOK,	/* TikTok webhooks and the shops' credentials */
	SERVICE_TT,		/* the TikTok Shop API client and its breaker */
	SERVICE_TOK,		/* renewing the shops' TikTok tokens */
	SERVICE_CARRIER,	/* the carrier (label broker) API client and its breaker */
	SERVICE_AUTH,		/* who calls the dashboard API */
	SERVICE_RATELIMIT,	/* the dashboard API's token buckets */
	SERVICE_PROC,		/* stored webhook events: fetch and apply */
	SERVICE_POLL,		/* polling reconciliation */
	SERVICE_STATS,		/* the list summary's counters (worker 0) */
	SERVICE_RETAIN,		/* raw webhook bodies cleared after webhook.retention (worker 0) */
	SERVICE_CACHE,		/* the Redis copy of order documents */
	SERVICE_SHIP,		/* the workflow's shipping steps */
	SERVICE_WF,		/* the workflow engine */
	SERVICE_EVENTS,		/* live updates: GET /api/events and the event log's retention */
	SERVICE_COUNT
};

/* One row; every hook may be NULL.  The instance is w->svc[id]. */
struct service {
	const char	*name;
	void		(*prepare)(struct pg_pool *pg);
	void		*(*create)(struct worker *w);
	bool		(*ready)(struct worker *w);
	void		(*start)(struct worker *w);
	void		(*reconfigure)(struct worker *w, const struct config *cfg);
	void		(*drain)(struct worker *w);
	void		(*close)(struct worker *w);
	void		(*destroy)(struct worker *w);
	void		(*metrics)(struct evbuffer *out, struct worker_set *s);
	void		(*order_changed)(struct worker *w, const struct order_change *c);
};

/* True when every service of w with a ready hook says so. */
bool service_ready(struct worker *w);

/*
 * The rows: service_table[id] for each enum service_id, then the modules
 * that only register statements (health, admin, the REST handlers); the
 * last row has a NULL name.
 */
extern const struct service service_table[];

#endif
