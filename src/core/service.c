/*
 * service: the rows of the per-worker services table.
 *
 * The one place that names every per-worker module.  Rows whose module
 * keeps typed functions get small adapters (SERVICE_HOOK), so the modules
 * and their unit tests keep their own types.
 */
#include "config.h"

#include "orderflow/admin.h"
#include "orderflow/auth.h"
#include "orderflow/cache.h"
#include "orderflow/connect.h"
#include "orderflow/carrier.h"
#include "orderflow/cwebhook.h"
#include "orderflow/health.h"
#include "orderflow/ostore.h"
#include "orderflow/poll.h"
#include "orderflow/proc.h"
#include "orderflow/ratelimit.h"
#include "orderflow/retain.h"
#include "orderflow/rest_bulk.h"
#include "orderflow/rest_inventory.h"
#include "orderflow/rest_orders.h"
#include "orderflow/rest_shipping.h"
#include "orderflow/rest_shops.h"
#include "orderflow/rest_workflows.h"
#include "orderflow/service.h"
#include "orderflow/ship.h"
#include "orderflow/sse.h"
#include "orderflow/stats.h"
#include "orderflow/tok.h"
#include "orderflow/tt.h"
#include "orderflow/webhook.h"
#include "orderflow/wf.h"
#include "orderflow/worker.h"

/* fn(instance) as a hook of the row id. */
#define SERVICE_HOOK(id, fn) \
	static void fn##_hook(struct worker *w) { fn(w->svc[id]); }
#define SERVICE_NEW(fn) \
	static void *fn##_hook(struct worker *w) { return fn(w); }

SERVICE_NEW(webhook_new)
SERVICE_HOOK(SERVICE_WEBHOOK, webhook_start)
SERVICE_HOOK(SERVICE_WEBHOOK, webhook_close)
SERVICE_HOOK(SERVICE_WEBHOOK, webhook_free)
SERVICE_NEW(tt_new)
SERVICE_HOOK(SERVICE_TT, tt_close)
SERVICE_HOOK(SERVICE_TT, tt_free)
SERVICE_NEW(tok_new)
SERVICE_HOOK(SERVICE_TOK, tok_close)
SERVICE_HOOK(SERVICE_TOK, tok_free)
SERVICE_NEW(cr_new)
SERVICE_HOOK(SERVICE_CARRIER, cr_close)
SERVICE_HOOK(SERVICE_CARRIER, cr_free)
SERVICE_NEW(auth_new)
SERVICE_HOOK(SERVICE_AUTH, auth_free)
SERVICE_HOOK(SERVICE_RATELIMIT, ratelimit_free)
SERVICE_NEW(proc_new)
SERVICE_HOOK(SERVICE_PROC, proc_start)
SERVICE_HOOK(SERVICE_PROC, proc_close)
SERVICE_HOOK(SERVICE_PROC, proc_free)
SERVICE_NEW(poll_new)
SERVICE_HOOK(SERVICE_POLL, poll_start)
SERVICE_HOOK(SERVICE_POLL, poll_close)
SERVICE_HOOK(SERVICE_POLL, poll_free)
SERVICE_NEW(retain_new)
SERVICE_HOOK(SERVICE_RETAIN, retain_start)
SERVICE_HOOK(SERVICE_RETAIN, retain_close)
SERVICE_HOOK(SERVICE_RETAIN, retain_free)
SERVICE_NEW(sse_new)
SERVICE_HOOK(SERVICE_EVENTS, sse_start)
SERVICE_HOOK(SERVICE_EVENTS, sse_drain)
SERVICE_HOOK(SERVICE_EVENTS, sse_close)
SERVICE_HOOK(SERVICE_EVENTS, sse_free)
SERVICE_NEW(stats_new)
SERVICE_HOOK(SERVICE_STATS, stats_start)
SERVICE_HOOK(SERVICE_STATS, stats_close)
SERVICE_HOOK(SERVICE_STATS, stats_free)

static bool
webhook_ready_hook(struct worker *w)
{
	return webhook_ready(w->svc[SERVICE_WEBHOOK]);
}

/* The limiter takes its loop, Redis connection and config rather than the worker. */
static void *
ratelimit_new_hook(struct worker *w)
{
	return ratelimit_new(w->base, w->rds, w->cfg);
}

static void
ratelimit_reconfigure_hook(struct worker *w, const struct config *cfg)
{
	ratelimit_reconfigure(w->svc[SERVICE_RATELIMIT], cfg);
}

static void
poll_reconfigure_hook(struct worker *w, const struct config *cfg)
{
	poll_reconfigure(w->svc[SERVICE_POLL], cfg);
}

static void
ratelimit_metrics_hook(struct evbuffer *out, struct worker_set *s)
{
	ratelimit_metrics(out);
}

const struct service service_table[] = {
	[SERVICE_WEBHOOK] = { .name = "webhook", .prepare = webhook_prepare,
	    .create = webhook_new_hook, .ready = webhook_ready_hook, .start = webhook_start_hook,
	    .close = webhook_close_hook, .destroy = webhook_free_hook, .metrics = webhook_metrics },
	[SERVICE_TT] = { .name = "tiktok", .create = tt_new_hook, .close = tt_close_hook,
	    .destroy = tt_free_hook, .metrics = tt_metrics },
	[SERVICE_TOK] = { .name = "tokens", .prepare = tok_prepare, .create = tok_new_hook,
	    .close = tok_close_hook, .destroy = tok_free_hook, .metrics = tok_metrics },
	[SERVICE_CARRIER] = { .name = "carrier", .create = cr_new_hook, .close = cr_close_hook,
	    .destroy = cr_free_hook, .metrics = cr_metrics },
	[SERVICE_AUTH] = { .name = "auth", .prepare = auth_prepare, .create = auth_new_hook,
	    .destroy = auth_free_hook, .metrics = auth_metrics },
	[SERVICE_RATELIMIT] = { .name = "ratelimit", .create = ratelimit_new_hook,
	    .reconfigure = ratelimit_reconfigure_hook, .destroy = ratelimit_free_hook,
	    .metrics = ratelimit_metrics_hook },
	[SERVICE_PROC] = { .name = "proc", .prepare = proc_prepare, .create = proc_new_hook,
	    .start = proc_start_hook, .close = proc_close_hook, .destroy = proc_free_hook,
	    .metrics = proc_metrics },
	[SERVICE_POLL] = { .name = "poll", .prepare = poll_prepare, .create = poll_new_hook,
	    .start = poll_start_hook, .reconfigure = poll_reconfigure_hook,
	    .close = poll_close_hook, .destroy = poll_free_hook, .metrics = poll_metrics },
	[SERVICE_STATS] = { .name = "stats", .prepare = stats_prepare, .create = stats_new_hook,
	    .start = stats_start_hook, .close = stats_close_hook, .destroy = stats_free_hook,
	    .metrics = stats_metrics },
	[SERVICE_RETAIN] = { .name = "retain", .prepare = retain_prepare, .create = retain_new_hook,
	    .start = retain_start_hook, .close = retain_close_hook, .destroy = retain_free_hook,
	    .metrics = retain_metrics },
	[SERVICE_CACHE] = { .name = "cache", .order_changed = cache_order_changed },
	[SERVICE_SHIP] = { .name = "shipping", .prepare = ship_prepare, .create = ship_new,
	    .start = ship_start, .close = ship_close, .destroy = ship_free, .metrics = ship_metrics },
	[SERVICE_WF] = { .name = "workflow", .prepare = wf_prepare, .create = wf_new,
	    .start = wf_start, .reconfigure = wf_reconfigure, .close = wf_close, .destroy = wf_free,
	    .metrics = wf_metrics, .order_changed = wf_order_changed },
	[SERVICE_EVENTS] = { .name = "events", .prepare = sse_prepare, .create = sse_new_hook,
	    .start = sse_start_hook, .drain = sse_drain_hook, .close = sse_close_hook,
	    .destroy = sse_free_hook, .metrics = sse_metrics },
	/* Statements only. */
	{ .name = "health", .prepare = health_prepare },
	{ .name = "admin", .prepare = admin_prepare },
	{ .name = "connect", .prepare = connect_prepare },
	{ .name = "rest_shops", .prepare = rest_shops_prepare },
	{ .name = "ostore", .prepare = ostore_prepare },
	{ .name = "rest_orders", .prepare = rest_orders_prepare },
	{ .name = "rest_bulk", .prepare = rest_bulk_prepare },
	{ .name = "rest_workflows", .prepare = rest_workflows_prepare },
	{ .name = "rest_inventory", .prepare = rest_inventory_prepare },
	{ .name = "carrier_webhook", .prepare = cwh_prepare },
	{ .name = "rest_shipping", .prepare = rest_shipping_prepare },
	{ .name = NULL },
};

bool
service_ready(struct worker *w)
{
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].ready != NULL && !service_table[i].ready(w))
			return false;
	return true;
}
