/*
 * webhook: verify, validate, group-commit, acknowledge.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/proc.h"
#include "orderflow/shops.h"
#include "orderflow/ttsign.h"
#include "orderflow/util.h"
#include "orderflow/webhook.h"
#include "orderflow/whenv.h"
#include "orderflow/worker.h"

/* Waiting events per worker, in batches; beyond that: 503. */
#define WEBHOOK_PENDING_BATCHES 4
/* Rejections of one kind are logged at most once a second per worker. */
#define WEBHOOK_LOG_EVERY_US 1000000

/* Why a webhook was refused; each has a counter and a log line. */
enum webhook_reject {
	WEBHOOK_REJ_CONTENT_TYPE,	/* 415: not application/json */
	WEBHOOK_REJ_NO_SIGNATURE,	/* 401: no Authorization header */
	WEBHOOK_REJ_BAD_SIGNATURE,	/* 401: no app's secret signs this body */
	WEBHOOK_REJ_UNKNOWN_SHOP,	/* 401: shop unknown, or of another app */
	WEBHOOK_REJ_BAD_JSON,		/* 400: body is not a JSON object */
	WEBHOOK_REJ_BAD_FIELD,		/* 400: a required field is missing or malformed */
	WEBHOOK_REJ_STALE,		/* 400: timestamp older than webhook.max_age */
	WEBHOOK_REJ_FUTURE,		/* 400: timestamp ahead by more than webhook.max_skew */
	WEBHOOK_REJ_UNAVAILABLE,	/* 503: database down, queue full, shops not loaded */
	WEBHOOK_REJ_MAX,
};

static const char *const webhook_reject_names[WEBHOOK_REJ_MAX] = {
	"content_type", "missing_signature", "bad_signature", "unknown_shop", "bad_json",
	"bad_field", "stale", "future", "unavailable",
};

/* One verified, validated event waiting for its commit. */
struct webhook_event {
	TAILQ_ENTRY(webhook_event) entry;
	struct httpd_req *hr;
	char		*params[7];	/* the webhook_insert parameters, see below */
};

TAILQ_HEAD(webhook_event_list, webhook_event);

/* A commit in flight and the events it carries. */
struct webhook_group {
	struct webhook	*wh;
	struct webhook_event_list events;
	int		n;
	bool		leased;	/* handed to the workers after the commit */
};

struct webhook {
	struct worker	*w;
	struct shops	*shops;
	struct webhook_event_list pending;	/* waiting for the next commit */
	int		npending;
	struct webhook_group *inflight;		/* the commit in flight, or NULL */
	int64_t		last_log[WEBHOOK_REJ_MAX];	/* mono us */
	unsigned	suppressed[WEBHOOK_REJ_MAX];	/* log lines skipped since */
	/* Counters; only this worker writes them. */
	atomic_ullong	rejected[WEBHOOK_REJ_MAX];
	atomic_ullong	accepted;		/* new events committed */
	atomic_ullong	duplicates;		/* acknowledged, already stored */
	atomic_ullong	commits;		/* group-commit transactions */
	atomic_ullong	commit_failures;	/* transactions that failed */
};

/*
 * $1 notification id (NULL if absent), $2 dedupe key, $3 shop uuid,
 * $4 TikTok shop id, $5 type, $6 TikTok order id (NULL if none), $7 raw body.
 */
/* $8 and $9: the lease this process takes at once, so no sweep claims it meanwhile. */
static const char webhook_insert_sql[] =
    "INSERT INTO webhook_events (source, notification_id, dedupe_key, shop_id,"
    " tiktok_shop_id, event_type, order_id, raw_body, lease_owner, lease_until)"
    " VALUES ('tiktok_shop', $1, $2, $3::uuid, $4, $5::integer, $6, $7, $8,"
    " now() + $9::bigint * interval '1 millisecond')"
    " ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id";

static void webhook_flush(struct webhook *wh);

void
webhook_prepare(struct pg_pool *pg)
{
	shops_prepare(pg);
	pg_pool_prepare(pg, "webhook_insert", webhook_insert_sql);
}

/* Refuse with status and count the reason; the log is rate limited. */
static void
webhook_reject(struct webhook *wh, struct httpd_req *hr, enum webhook_reject why, int status,
    const char *code, const char *message)
{
	int64_t now = util_mono_us();

	util_count(&wh->rejected[why], 1);
	if (now - wh->last_log[why] >= WEBHOOK_LOG_EVERY_US) {
		log_warn("webhook rejected", "reason=%s status=%d detail=%s suppressed=%u",
		    webhook_reject_names[why], status, log_quote(message), wh->suppressed[why]);
		wh->last_log[why] = now;
		wh->suppressed[why] = 0;
	} else {
		wh->suppressed[why]++;
	}
	if (why == WEBHOOK_REJ_UNAVAILABLE)
		httpd_unavailable(hr, 1, message);
	else
		httpd_error(hr, status, code, "%s", message);
}

static void
webhook_event_free(struct webhook_event *ev)
{
	for (size_t i = 0; i < NELEM(ev->params); i++)
		free(ev->params[i]);
	free(ev);
}

/* The app whose secret signs body with this header, or NULL. */
static const struct shop_app *
webhook_verify(struct shops *shops, const void *body, size_t len, const char *sig)
{
	for (size_t i = 0; i < shops_app_count(shops); i++) {
		const struct shop_app *app = shops_app(shops, i);

		if (ttsign_webhook_verify(app->key, app->secret, body, len, sig))
			return app;
	}
	return NULL;
}

/* Check the parsed envelope and fill ev; on error returns the message. */
static const char *
webhook_validate(struct webhook *wh, json_t *doc, const char *body, size_t len,
    struct webhook_event *ev, const struct shop_app *app, enum webhook_reject *why)
{
	const struct config *cfg = wh->w->cfg;
	json_int_t now = (json_int_t)time(NULL);
	const struct shop *shop;
	struct whenv e;
	const char *bad;
	char key[WHENV_KEY_MAX], num[24];

	*why = WEBHOOK_REJ_BAD_FIELD;
	if ((bad = whenv_parse(doc, &e)) != NULL)
		return bad;
	*why = WEBHOOK_REJ_STALE;
	if (cfg->webhook.max_age > 0 && (now - e.timestamp) * 1000 > cfg->webhook.max_age)
		return "event older than webhook.max_age";
	*why = WEBHOOK_REJ_FUTURE;
	if ((e.timestamp - now) * 1000 > cfg->webhook.max_skew)
		return "event timestamp is in the future";
	*why = WEBHOOK_REJ_UNKNOWN_SHOP;
	if ((shop = shops_find(wh->shops, e.shop_id)) == NULL || strcmp(shop->app_key, app->key) != 0)
		return "unknown shop";
	snprintf(num, sizeof(num), "%lld", (long long)e.type);
	whenv_dedupe_key(&e, key, sizeof(key));
	ev->params[0] = e.nid != NULL ? xstrdup(e.nid) : NULL;
	ev->params[1] = xstrdup(key);
	ev->params[2] = xstrdup(shop->id);
	ev->params[3] = xstrdup(e.shop_id);
	ev->params[4] = xstrdup(num);
	ev->params[5] = e.order_id != NULL ? xstrdup(e.order_id) : NULL;
	ev->params[6] = xstrndup(body, len);
	return NULL;
}

void
webhook_tiktok(struct httpd_req *hr)
{
	struct webhook *wh = hr->w->svc[SERVICE_WEBHOOK];
	struct evhttp_request *req = hr->req;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *sig = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const char *body, *bad;
	const struct shop_app *app;
	struct webhook_event *ev;
	enum webhook_reject why;
	json_error_t jerr;
	json_t *doc;

	if (!httpd_is_json(hr)) {
		webhook_reject(wh, hr, WEBHOOK_REJ_CONTENT_TYPE, 415, "unsupported_media_type",
		    "Content-Type must be application/json");
		return;
	}
	if (sig == NULL || sig[0] == '\0') {
		webhook_reject(wh, hr, WEBHOOK_REJ_NO_SIGNATURE, 401, "missing_signature",
		    "the Authorization header with the webhook signature is missing");
		return;
	}
	if (!shops_loaded(wh->shops)) {
		webhook_reject(wh, hr, WEBHOOK_REJ_UNAVAILABLE, 503, "unavailable",
		    "shop credentials not loaded yet");
		return;
	}
	body = (const char *)evbuffer_pullup(in, -1);
	if ((app = webhook_verify(wh->shops, body != NULL ? body : "", len, sig)) == NULL) {
		webhook_reject(wh, hr, WEBHOOK_REJ_BAD_SIGNATURE, 401, "invalid_signature",
		    "the signature does not match the body");
		return;
	}
	if ((doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL || !json_is_object(doc)) {
		json_decref(doc);
		webhook_reject(wh, hr, WEBHOOK_REJ_BAD_JSON, 400, "invalid_json",
		    "the body is not a JSON object");
		return;
	}
	ev = xcalloc(1, sizeof(*ev));
	bad = webhook_validate(wh, doc, body, len, ev, app, &why);
	json_decref(doc);
	if (bad != NULL) {
		webhook_event_free(ev);
		webhook_reject(wh, hr, why, why == WEBHOOK_REJ_UNKNOWN_SHOP ? 401 : 400,
		    why == WEBHOOK_REJ_UNKNOWN_SHOP ? "unknown_shop" : why == WEBHOOK_REJ_BAD_FIELD ?
		    "invalid_field" : "invalid_timestamp", bad);
		return;
	}
	if (wh->npending >= WEBHOOK_PENDING_BATCHES * (int)wh->w->cfg->webhook.max_batch) {
		webhook_event_free(ev);
		webhook_reject(wh, hr, WEBHOOK_REJ_UNAVAILABLE, 503, "unavailable",
		    "ingest queue full");
		return;
	}
	ev->hr = hr;
	TAILQ_INSERT_TAIL(&wh->pending, ev, entry);
	wh->npending++;
	if (wh->inflight == NULL)
		webhook_flush(wh);
}

static void
webhook_group_free(struct webhook_group *g)
{
	struct webhook_event *ev;

	while ((ev = TAILQ_FIRST(&g->events)) != NULL) {
		TAILQ_REMOVE(&g->events, ev, entry);
		webhook_event_free(ev);
	}
	free(g);
}

static void
webhook_fail_group(struct webhook *wh, struct webhook_group *g, const char *why)
{
	struct webhook_event *ev;

	TAILQ_FOREACH(ev, &g->events, entry)
		webhook_reject(wh, ev->hr, WEBHOOK_REJ_UNAVAILABLE, 503, "unavailable", why);
	webhook_group_free(g);
}

static void
webhook_on_commit(struct pg_batch *b, void *arg)
{
	static const char ok[] = "{\"code\":0,\"message\":\"success\"}";
	static const char dup[] = "{\"code\":0,\"message\":\"duplicate\"}";
	struct webhook_group *g = arg;
	struct webhook *wh = g->wh;
	struct webhook_event *ev;
	int i = 0;

	wh->inflight = NULL;
	util_count(&wh->commits, 1);
	if (pg_batch_error(b) != NULL) {
		util_count(&wh->commit_failures, 1);
		log_warn("webhook commit failed", "events=%d error=%s", g->n,
		    log_quote(pg_batch_error(b)));
		webhook_fail_group(wh, g, "the event could not be stored; retry later");
	} else {
		TAILQ_FOREACH(ev, &g->events, entry) {
			PGresult *r = pg_batch_result(b, i++);
			bool fresh = PQntuples(r) == 1;

			util_count(fresh ? &wh->accepted : &wh->duplicates, 1);
			if (fresh && g->leased)
				proc_submit(wh->w, strtoll(PQgetvalue(r, 0, 0), NULL, 10), ev->params[2],
				    atoi(ev->params[4]), ev->params[5], 0);
			httpd_reply(ev->hr, 200, "application/json", fresh ? ok : dup,
			    fresh ? sizeof(ok) - 1 : sizeof(dup) - 1);
		}
		webhook_group_free(g);
	}
	if (wh->npending > 0)
		webhook_flush(wh);
}

/* Start one transaction with everything that waits, up to webhook.max_batch. */
static void
webhook_flush(struct webhook *wh)
{
	struct webhook_group *g = xcalloc(1, sizeof(*g));
	struct webhook_event *ev;
	struct pg_batch *b = pg_batch_new(webhook_on_commit, g);
	char lease[24];
	/* The event's own parameters, then the lease owner and its length. */
	const char *vals[NELEM(((struct webhook_event *)0)->params) + 2];

	/*
	 * While the workers hold their fill (TikTok down, a spike), new events
	 * go to the inbox unleased: the claim sweep takes them when there is
	 * room, and none needs a second statement to be given back.
	 */
	g->leased = proc_has_room(wh->w);
	snprintf(lease, sizeof(lease), "%lld", (long long)wh->w->cfg->tiktok.lease);
	vals[NELEM(vals) - 2] = g->leased ? wh->w->set->instance : NULL;
	vals[NELEM(vals) - 1] = g->leased ? lease : NULL;
	g->wh = wh;
	TAILQ_INIT(&g->events);
	while (g->n < wh->w->cfg->webhook.max_batch && (ev = TAILQ_FIRST(&wh->pending)) != NULL) {
		TAILQ_REMOVE(&wh->pending, ev, entry);
		wh->npending--;
		TAILQ_INSERT_TAIL(&g->events, ev, entry);
		memcpy(vals, ev->params, sizeof(ev->params));
		pg_batch_add(b, true, "webhook_insert", (int)NELEM(vals), vals);
		g->n++;
	}
	wh->inflight = g;
	switch (pg_submit(wh->w->pg, b)) {
	case PG_OK:
		return;
	case PG_EDOWN:
		wh->inflight = NULL;
		webhook_fail_group(wh, g, "database unavailable");
		break;
	case PG_EFULL:
		wh->inflight = NULL;
		webhook_fail_group(wh, g, "database busy");
		break;
	}
	/* Whatever still waits would meet the same fate now: answer it too. */
	if (wh->npending > 0)
		webhook_flush(wh);
}

struct webhook *
webhook_new(struct worker *w)
{
	struct webhook *wh = xcalloc(1, sizeof(*wh));

	wh->w = w;
	wh->shops = shops_new(w);
	TAILQ_INIT(&wh->pending);
	return wh;
}

void
webhook_start(struct webhook *wh)
{
	shops_start(wh->shops);
}

struct shops *
webhook_shops(struct webhook *wh)
{
	return wh->shops;
}

bool
webhook_ready(const struct webhook *wh)
{
	return shops_loaded(wh->shops);
}

void
webhook_close(struct webhook *wh)
{
	struct webhook_event *ev;

	while ((ev = TAILQ_FIRST(&wh->pending)) != NULL) {
		TAILQ_REMOVE(&wh->pending, ev, entry);
		wh->npending--;
		httpd_unavailable(ev->hr, 1, "shutting down");
		webhook_event_free(ev);
	}
	shops_stop(wh->shops);
}

void
webhook_free(struct webhook *wh)
{
	if (wh == NULL)
		return;
	webhook_close(wh);
	shops_free(wh->shops);
	free(wh);
}

void
webhook_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long rej[WEBHOOK_REJ_MAX] = { 0 }, acc = 0, dup = 0, commits = 0, fails = 0;

	for (int i = 0; i < s->n; i++) {
		struct webhook *wh = s->workers[i].svc[SERVICE_WEBHOOK];

		for (int r = 0; r < WEBHOOK_REJ_MAX; r++)
			rej[r] += atomic_load(&wh->rejected[r]);
		acc += atomic_load(&wh->accepted);
		dup += atomic_load(&wh->duplicates);
		commits += atomic_load(&wh->commits);
		fails += atomic_load(&wh->commit_failures);
	}
	evbuffer_add_printf(out, "# HELP orderflow_webhooks_rejected_total Webhooks refused, by reason.\n"
	    "# TYPE orderflow_webhooks_rejected_total counter\n");
	for (int r = 0; r < WEBHOOK_REJ_MAX; r++)
		evbuffer_add_printf(out, "orderflow_webhooks_rejected_total{reason=\"%s\"} %llu\n",
		    webhook_reject_names[r], rej[r]);
	evbuffer_add_printf(out,
	    "# HELP orderflow_webhooks_accepted_total New webhook events committed.\n"
	    "# TYPE orderflow_webhooks_accepted_total counter\n"
	    "orderflow_webhooks_accepted_total %llu\n"
	    "# HELP orderflow_webhooks_duplicate_total Webhooks acknowledged as already stored.\n"
	    "# TYPE orderflow_webhooks_duplicate_total counter\n"
	    "orderflow_webhooks_duplicate_total %llu\n"
	    "# HELP orderflow_webhook_commits_total Group-commit transactions.\n"
	    "# TYPE orderflow_webhook_commits_total counter\n"
	    "orderflow_webhook_commits_total %llu\n"
	    "# HELP orderflow_webhook_commit_failures_total Group commits that failed (answered 503).\n"
	    "# TYPE orderflow_webhook_commit_failures_total counter\n"
	    "orderflow_webhook_commit_failures_total %llu\n", acc, dup, commits, fails);
}
