/*
 * ship: labels, TikTok ship calls, confirmation and voids, package by package.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/carrier.h"
#include "orderflow/apply.h"
#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/service.h"
#include "orderflow/ship.h"
#include "orderflow/ship_plan.h"
#include "orderflow/shops.h"
#include "orderflow/smap.h"
#include "orderflow/tt.h"
#include "orderflow/twheel.h"
#include "orderflow/ttsign.h"
#include "orderflow/util.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"

/* Package key of the one package TikTok has not made yet (US seller shipping). */
#define SHIP_WHOLE_ORDER "order"
/* Provider lists a worker keeps (shop, delivery option); past it, it starts afresh. */
#define SHIP_PROVIDERS_MAX 1000

/* The fulfillment and logistics paths (TikTok Shop API 202309). */
#define TT_PKG_PATH		"/fulfillment/202309/packages/%s"
#define TT_SHIP_PATH		"/fulfillment/202309/packages/%s/ship"
#define TT_DOCS_PATH		"/fulfillment/202309/packages/%s/shipping_documents"
#define TT_MARK_PATH		"/fulfillment/202309/orders/%s/packages"
#define TT_PROVIDERS_PATH	"/logistics/202309/delivery_options/%s/shipping_providers"

/* The shipping context of an order: one row of JSON. */
static const char ship_ctx_sql[] =
    "SELECT json_build_object('tiktok_order_id', o.tiktok_order_id, 'shop_id', o.shop_id,"
    " 'shipping_type', coalesce(o.shipping_type, 'TIKTOK'),"
    " 'delivery_option_id', o.delivery_option_id, 'packages', o.tiktok_packages,"
    " 'address', o.shipping_address, 'name', o.customer_name, 'phone', o.customer_phone,"
    " 'email', o.customer_email,"
    " 'items', (SELECT coalesce(json_agg(json_build_object('sku', i.product_sku,"
    "  'quantity', i.quantity, 'line_item_ids', i.tiktok_line_item_ids,"
    "  'weight_oz', v.weight_oz, 'length_in', v.length_in, 'width_in', v.width_in,"
    "  'height_in', v.height_in) ORDER BY i.product_sku), '[]') FROM order_items i"
    "  LEFT JOIN inventory_items v ON v.user_id = i.user_id AND v.sku = i.product_sku"
    "  WHERE i.order_id = o.id),"
    " 'settings', (SELECT json_build_object('from_address', s.from_address, 'parcel', s.parcel,"
    "  'rate_rule', s.rate_rule, 'handover_method', s.handover_method)"
    "  FROM shipping_settings s WHERE s.user_id = o.user_id),"
    " 'shipments', (SELECT coalesce(json_agg(to_jsonb(s.*) ORDER BY s.created_at), '[]')"
    "  FROM shipments s WHERE s.order_id = o.id AND s.state <> 'voided'))::text"
    " FROM orders o WHERE o.id = $1::uuid AND o.user_id = $2::uuid";

static const char ship_save_sql[] = "SELECT shipment_save($1::jsonb)::text";

/* Shops whose confirmations one loop turn sends (more wait for the next turn). */
#define SHIP_CONFIRM_SHOPS_MAX 256
/* How often worker 0 reads the SLA clock. */
#define SHIP_SLA_EVERY_MS 10000

/*
 * The SLA clock: orders still to ship whose ship-by time is within $1 ms
 * (at risk), and those past it (late dispatches); orders_to_ship_sla_idx.
 */
static const char ship_sla_sql[] =
    "SELECT count(*) FILTER (WHERE rts_sla_time >= now()),"
    " count(*) FILTER (WHERE rts_sla_time < now()) FROM orders"
    " WHERE order_status IN ('confirmed', 'processing') AND rts_sla_time IS NOT NULL"
    " AND rts_sla_time < now() + $1::bigint * interval '1 millisecond'";

/* TikTok's answers meaning the package is shipped already (research 1.3). */
static const long long ship_already_codes[] = {
	11006021, 21008099, 21011040, 21011020, 21011006, 21042056,
};

/* TikTok statuses that say the order left the seller. */
static const char *const ship_shipped_statuses[] = {
	"AWAITING_COLLECTION", "PARTIALLY_SHIPPING", "IN_TRANSIT", "DELIVERED", "COMPLETED", NULL,
};

struct ship_figures {
	atomic_ullong	labels, ships, voids, refused, confirms, fails, retries;
};

struct ship_providers {
	json_t		*list;		/* [{"id", "name"}] */
	int64_t		at_ms;		/* when read (monotonic) */
};

struct ship {
	struct worker	*w;
	struct smap	*providers;	/* "shop:delivery option" -> struct ship_providers */
	bool		closing;
	struct smap	*confirms;	/* shop id -> struct ship_confirms, for this loop turn */
	struct event	*confirm_kick;	/* sends them at the end of the turn */
	struct twheel_timer sla_timer;	/* worker 0: the SLA clock */
	bool		sla_out;	/* its query is in flight */
	atomic_llong	at_risk, late;	/* its last reading (worker 0's), -1: none yet */
	struct ship_figures fig;
};

struct ship_task;
typedef void ship_db_next(struct ship_task *t, json_t *row, const char *error);
typedef void ship_cr_next(struct ship_task *t, const struct cr_result *r);
typedef void ship_tt_next(struct ship_task *t, const struct tt_result *r);

struct ship_task {
	struct ship	*s;
	enum ship_step	step;
	char		order[37], creator[37], key[160];
	ship_cb		*cb;		/* NULL: abandoned */
	void		*arg;
	json_t		*ctx;		/* the order's shipping context */
	json_t		*work;		/* [{"key", "tiktok_id", "lines", "row"}] */
	size_t		at;		/* the package being worked on */
	json_t		*shipment;	/* the carrier's shipment object being handled */
	json_t		*doc;		/* SHIP_QUOTE: the rates found, per package */
	char		rate_id[101];	/* the API's rate choice, or "" */
	bool		api;		/* asked by the dashboard API, not a workflow */
	struct tt_result tt_result;	/* a refusal kept across a save */
	char		why[300];	/* its text */
	int		voided;		/* SHIP_VOID: labels refunded or dropped */
	ship_db_next	*db_next;
	ship_db_next	*saved_next;	/* after ship_save */
	ship_cr_next	*cr_next;
	ship_tt_next	*tt_next;
};

static void ship_next(struct ship_task *t);
struct ship_confirms;
static void ship_confirm_flush(struct ship_confirms *b);
static void ship_on_confirm_kick(evutil_socket_t fd, short what, void *arg);

void
ship_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "ship_ctx", ship_ctx_sql);
	pg_pool_prepare(pg, "ship_save", ship_save_sql);
	pg_pool_prepare(pg, "ship_sla", ship_sla_sql);
}

static void
ship_on_sla(struct pg_batch *b, void *arg)
{
	struct ship *s = arg;
	PGresult *r = pg_batch_result(b, 0);

	s->sla_out = false;
	if (pg_batch_error(b) == NULL && r != NULL && PQntuples(r) == 1) {
		atomic_store(&s->at_risk, strtoll(PQgetvalue(r, 0, 0), NULL, 10));
		atomic_store(&s->late, strtoll(PQgetvalue(r, 0, 1), NULL, 10));
	}
}

static void
ship_on_sla_timer(struct twheel_timer *t)
{
	struct ship *s = container_of(t, struct ship, sla_timer);
	char warn[24];
	struct pg_batch *b;

	if (s->closing)
		return;
	twheel_add(s->w->wheel, &s->sla_timer, worker_now_ms() + SHIP_SLA_EVERY_MS);
	if (s->sla_out || s->w->cfg->shipping.sla_warning == 0)
		return;
	snprintf(warn, sizeof(warn), "%lld", (long long)s->w->cfg->shipping.sla_warning);
	b = pg_batch_new(ship_on_sla, s);
	pg_batch_add(b, true, "ship_sla", 1, (const char *[]){ warn });
	s->sla_out = pg_submit(s->w->pg, b) == PG_OK;
}

void
ship_start(struct worker *w)
{
	struct ship *s = w->svc[SERVICE_SHIP];

	if (w->id == 0)
		twheel_add(w->wheel, &s->sla_timer, worker_now_ms() + 1000);
}

void *
ship_new(struct worker *w)
{
	struct ship *s = xcalloc(1, sizeof(*s));

	s->w = w;
	s->providers = smap_new();
	s->confirms = smap_new();
	s->confirm_kick = event_new(w->base, -1, 0, ship_on_confirm_kick, s);
	twheel_timer_init(&s->sla_timer, ship_on_sla_timer);
	atomic_init(&s->at_risk, -1);
	atomic_init(&s->late, -1);
	return s;
}

static void
ship_providers_free(void *v)
{
	struct ship_providers *p = v;

	json_decref(p->list);
	free(p);
}

void
ship_close(struct worker *w)
{
	struct ship *s = w->svc[SERVICE_SHIP];

	if (s != NULL) {
		const char *k;
		void *v;
		size_t pos = 0;

		s->closing = true;
		twheel_cancel(&s->sla_timer);
		event_del(s->confirm_kick);
		/* Confirmations not sent yet end now (shutting down). */
		while (smap_count(s->confirms) > 0 && smap_next(s->confirms, &pos, &k, &v)) {
			ship_confirm_flush(v);
			pos = 0;
		}
	}
}

void
ship_free(struct worker *w)
{
	struct ship *s = w->svc[SERVICE_SHIP];

	if (s == NULL)
		return;
	smap_free(s->providers, ship_providers_free);
	smap_free(s->confirms, free);
	if (s->confirm_kick != NULL)
		event_free(s->confirm_kick);
	free(s);
}

/* ---- ending ------------------------------------------------------------------- */

static void
ship_task_free(struct ship_task *t)
{
	json_decref(t->ctx);
	json_decref(t->work);
	json_decref(t->shipment);
	json_decref(t->doc);
	free(t);
}

static void
ship_end(struct ship_task *t, enum ship_verdict v, int64_t delay_ms, const char *fmt, ...)
    PRINTFLIKE(4, 5);

static void
ship_end(struct ship_task *t, enum ship_verdict v, int64_t delay_ms, const char *fmt, ...)
{
	struct ship_outcome o = { .verdict = v, .delay_ms = delay_ms };
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	o.error = why;
	o.doc = t->step == SHIP_QUOTE ? t->doc : t->work;
	if (v == SHIP_FAIL)
		util_count(&t->s->fig.fails, 1);
	else if (v == SHIP_RETRY || v == SHIP_WAIT)
		util_count(&t->s->fig.retries, 1);
	if (v != SHIP_DONE)
		log_info("shipping step did not finish", "order=%s step=%d verdict=%d error=%s",
		    t->order, (int)t->step, (int)v, log_quote(why));
	if (t->cb != NULL)
		t->cb(&o, t->arg);
	ship_task_free(t);
}

void
ship_abandon(struct ship_task *t)
{
	t->cb = NULL;
}

/* ---- the database --------------------------------------------------------------- */

static void
ship_on_db(struct pg_batch *b, void *arg)
{
	struct ship_task *t = arg;
	const char *error = pg_batch_error(b);
	PGresult *r = pg_batch_result(b, 0);
	json_t *row = NULL;

	/* No row and no error: the continuation says what a missing row means. */
	if (error == NULL && r != NULL && PQntuples(r) == 0) {
		t->db_next(t, NULL, NULL);
		return;
	}
	if (error == NULL && (r == NULL || PQntuples(r) != 1 || PQgetisnull(r, 0, 0)))
		error = "the database's answer is not one row";
	if (error == NULL && (row = json_loads(PQgetvalue(r, 0, 0), 0, NULL)) == NULL)
		error = "the database answered something that is not JSON";
	t->db_next(t, row, error);
	json_decref(row);
}

static void
ship_db(struct ship_task *t, const char *stmt, int n, const char *const *values,
    ship_db_next *next)
{
	struct pg_batch *b;

	if (t->s->closing) {
		ship_end(t, SHIP_RETRY, 0, "shutting down");
		return;
	}
	b = pg_batch_new(ship_on_db, t);
	t->db_next = next;
	pg_batch_add(b, true, stmt, n, values);
	if (pg_submit(t->s->w->pg, b) != PG_OK)
		ship_end(t, SHIP_RETRY, 0, "the database is unavailable");
}

/* The package being worked on, and its shipment row (NULL: none yet). */
static json_t *
ship_pkg(struct ship_task *t)
{
	return json_array_get(t->work, t->at);
}

static json_t *
ship_row(struct ship_task *t)
{
	json_t *r = json_object_get(ship_pkg(t), "row");

	return json_is_object(r) ? r : NULL;
}

static const char *
ship_row_str(struct ship_task *t, const char *key)
{
	return json_string_value(json_object_get(ship_row(t), key));
}

static bool
ship_row_is(struct ship_task *t, const char *state)
{
	const char *s = ship_row_str(t, "state");

	return s != NULL && strcmp(s, state) == 0;
}

static void
ship_on_saved(struct ship_task *t, json_t *row, const char *error)
{
	ship_db_next *then = t->saved_next;

	if (error == NULL && row == NULL)
		error = "the shipment is not there";
	if (error != NULL) {
		ship_end(t, SHIP_RETRY, 0, "recording the shipment failed: %s", error);
		return;
	}
	json_object_set(ship_pkg(t), "row", row);
	then(t, row, NULL);
}

/*
 * Record fields (taken) on the package's shipment row (a new one when it
 * has none), then go on with next.
 */
static void
ship_save(struct ship_task *t, json_t *fields, ship_db_next *next)
{
	json_t *row = ship_row(t), *pkg = ship_pkg(t);
	char *json;
	char key[300];

	if (row != NULL) {
		json_object_set(fields, "id", json_object_get(row, "id"));
	} else {
		snprintf(key, sizeof(key), "%s:%s", t->key,
		    json_string_value(json_object_get(pkg, "key")));
		json_object_set_new(fields, "idem_key", json_string(key));
		json_object_set_new(fields, "order_id", json_string(t->order));
		json_object_set_new(fields, "package_key", json_copy(json_object_get(pkg, "key")));
		json_object_set(fields, "shipping_type", json_object_get(t->ctx, "shipping_type"));
		json_object_set(fields, "tiktok_package_id", json_object_get(pkg, "tiktok_id"));
	}
	json_object_set_new(fields, "user_id", json_string(t->creator));
	json_object_set_new(fields, "last_error", json_null());
	json = json_dumps(fields, JSON_COMPACT);
	json_decref(fields);
	t->saved_next = next;
	ship_db(t, "ship_save", 1, (const char *[]){ json }, ship_on_saved);
	free(json);
}

/* ---- calls ---------------------------------------------------------------------- */

static void
ship_on_cr(const struct cr_result *r, void *arg)
{
	struct ship_task *t = arg;

	t->cr_next(t, r);
}

/* A carrier call that was not sent: the verdict it means. */
static void
ship_cr_unsent(struct ship_task *t, enum cr_status st)
{
	struct carrier *c = t->s->w->svc[SERVICE_CARRIER];

	if (st == CR_OPEN)
		ship_end(t, SHIP_WAIT, cr_breaker_wait_ms(c), "the carrier's breaker is open");
	else if (st == CR_NOKEY)
		ship_end(t, SHIP_FAIL, 0, "no carrier API key is configured (carrier.api_key_file)");
	else if (st == CR_BADID)
		ship_end(t, SHIP_FAIL, 0, "the carrier's shipment or rate id is missing or not usable");
	else
		/* Our own queue, not the carrier: again soon, no attempt used. */
		ship_end(t, SHIP_WAIT, 1000, "the carrier client's queue is full");
}

/* A carrier call that failed: retry, or fail with what the carrier said. */
static void
ship_cr_failed(struct ship_task *t, const struct cr_result *r, const char *what)
{
	if (r->status == CR_FATAL)
		ship_end(t, SHIP_FAIL, 0, "the carrier refused to %s: %s", what, r->error);
	else
		ship_end(t, SHIP_RETRY, r->retry_after_ms, "%s at the carrier failed: %s", what,
		    r->error);
}

static void
ship_on_tt(const struct tt_result *r, void *arg)
{
	struct ship_task *t = arg;

	t->tt_next(t, r);
}

/* The shop's credentials, or NULL after ending the task. */
static bool
ship_creds(struct ship_task *t, struct tt_creds *c)
{
	const char *shop_id = json_string_value(json_object_get(t->ctx, "shop_id"));
	const struct shop *s = shop_id != NULL ?
	    shops_find_id(webhook_shops(t->s->w->svc[SERVICE_WEBHOOK]), shop_id) : NULL;

	if (s == NULL) {
		ship_end(t, shop_id == NULL ? SHIP_FAIL : SHIP_RETRY, 0, shop_id == NULL ?
		    "the order has no TikTok shop" : "the order's shop is not loaded yet");
		return false;
	}
	if (strcmp(s->status, "active") != 0) {
		ship_end(t, SHIP_FAIL, 0, "the order's shop is %s: TikTok cannot be told", s->status);
		return false;
	}
	*c = (struct tt_creds){ s->app_key, s->app_secret, s->access_token, s->shop_cipher, s->id };
	return true;
}

/* Send a TikTok call; false after ending the task when it could not be sent. */
static bool
ship_tt(struct ship_task *t, const char *method, const char *path,
    const struct ttsign_param *q, size_t nq, json_t *body, ship_tt_next *next)
{
	struct tt *tt = t->s->w->svc[SERVICE_TT];
	struct tt_creds c;
	enum tt_status st;
	char *json;

	if (t->s->closing) {
		json_decref(body);
		ship_end(t, SHIP_RETRY, 0, "shutting down");
		return false;
	}
	if (!ship_creds(t, &c)) {
		json_decref(body);
		return false;
	}
	json = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	t->tt_next = next;
	st = tt_call(tt, &c, method, path, q, nq, json, ship_on_tt, t);
	free(json);
	if (st == TT_OK)
		return true;
	if (st == TT_OPEN)
		ship_end(t, SHIP_WAIT, tt_breaker_wait_ms(tt), "the TikTok breaker is open");
	else
		ship_end(t, SHIP_WAIT, 1000, "the TikTok client's queue is full");
	return false;
}

static bool
ship_already_shipped(const struct tt_result *r)
{
	for (size_t i = 0; i < NELEM(ship_already_codes); i++)
		if (r->code == ship_already_codes[i])
			return true;
	return false;
}

/* A TikTok call that failed: retry, or fail with TikTok's answer. */
static void
ship_tt_failed(struct ship_task *t, const struct tt_result *r, const char *what)
{
	if (r->status == TT_RETRY)
		ship_end(t, SHIP_RETRY, r->retry_after_ms, "%s on TikTok failed: %s", what, r->error);
	else if (r->status == TT_TOKEN)
		ship_end(t, SHIP_FAIL, 0, "TikTok refused the shop's credentials for %s: %s", what,
		    r->error);
	else
		ship_end(t, SHIP_FAIL, 0, "TikTok refused %s: %s", what, r->error);
}

/* ---- labels ---------------------------------------------------------------------- */

static void ship_label_buy(struct ship_task *t);
static void ship_label_got(struct ship_task *t, const struct cr_result *r);
static json_t *ship_rates_brief(json_t *rates);

static void
ship_advance(struct ship_task *t, json_t *row, const char *error)
{
	t->at++;
	ship_next(t);
}

/* The purchase in the carrier's shipment object, recorded. */
static void
ship_label_record(struct ship_task *t, json_t *shp)
{
	json_t *sel = json_object_get(shp, "selected_rate"), *pl = json_object_get(shp, "postage_label");
	const char *tracking = json_string_value(json_object_get(shp, "tracking_code"));
	const char *url = json_string_value(json_object_get(pl, "label_url"));
	long long cents = sp_cents(json_string_value(json_object_get(sel, "rate")));
	json_t *f;

	if (tracking == NULL || url == NULL || !json_is_object(sel) || cents < 0 ||
	    strlen(tracking) > 100 || strlen(url) > 2000) {
		ship_end(t, SHIP_FAIL, 0, "the carrier's purchase lacks a tracking code, label URL "
		    "or rate");
		return;
	}
	f = json_pack("{s:s,s:s,s:s,s:O?,s:O?,s:O?,s:O,s:O?,s:O?}", "state", "purchased",
	    "tracking_number", tracking, "label_url", url, "carrier", json_object_get(sel, "carrier"),
	    "service", json_object_get(sel, "service"), "rate_id", json_object_get(sel, "id"),
	    "cost", json_object_get(sel, "rate"), "currency", json_object_get(sel, "currency"),
	    "tracker_id", json_object_get(json_object_get(shp, "tracker"), "id"));
	util_count(&t->s->fig.labels, 1);
	log_info("label bought", "order=%s package=%s tracking=%s", t->order,
	    json_string_value(json_object_get(ship_pkg(t), "key")), tracking);
	ship_save(t, f, ship_advance);
}

static void
ship_on_bought(struct ship_task *t, const struct cr_result *r)
{
	if (r->status == CR_OK) {
		ship_label_record(t, r->obj);
		return;
	}
	if (r->status == CR_UNKNOWN || strcmp(r->code, "SHIPMENT.POSTAGE.EXISTS") == 0) {
		/* It may have been bought: read it back before anything else. */
		enum cr_status st;

		t->cr_next = ship_label_got;
		if ((st = cr_get_shipment(t->s->w->svc[SERVICE_CARRIER],
		    ship_row_str(t, "carrier_shipment_id"), ship_on_cr, t)) != CR_OK)
			ship_cr_unsent(t, st);
		return;
	}
	ship_cr_failed(t, r, "buy the label");
}

/* The rates (the shipment's), the rule's pick, the purchase. */
static void
ship_label_buy(struct ship_task *t)
{
	json_t *rule = json_object_get(json_object_get(t->ctx, "settings"), "rate_rule");
	json_t *rates = json_object_get(t->shipment, "rates");
	char why[300];
	int i = sp_choose_rate(rates, rule, why, sizeof(why));
	enum cr_status st;

	if (t->step == SHIP_QUOTE) {
		json_array_append_new(json_object_get(t->doc, "packages"), json_pack("{s:O,s:o,s:s?}",
		    "package", json_object_get(ship_pkg(t), "key"), "rates", ship_rates_brief(rates),
		    "chosen", i >= 0 ? json_string_value(json_object_get(json_array_get(rates,
		    (size_t)i), "id")) : NULL));
		ship_advance(t, NULL, NULL);
		return;
	}
	if (t->rate_id[0] != '\0') {
		json_t *r;
		size_t k;

		i = -1;
		json_array_foreach(rates, k, r)
			if (strcmp(json_string_value(json_object_get(r, "id")) != NULL ?
			    json_string_value(json_object_get(r, "id")) : "", t->rate_id) == 0)
				i = (int)k;
		if (i < 0) {
			ship_end(t, SHIP_INVALID, 0, "rate %s is not one of the carrier's rates for "
			    "package %s: read them again (GET .../shipping/rates)", t->rate_id,
			    json_string_value(json_object_get(ship_pkg(t), "key")));
			return;
		}
	}
	if (i < 0) {
		ship_end(t, SHIP_FAIL, 0, "%s", why);
		return;
	}
	t->cr_next = ship_on_bought;
	if ((st = cr_buy(t->s->w->svc[SERVICE_CARRIER], ship_row_str(t, "carrier_shipment_id"),
	    json_string_value(json_object_get(json_array_get(rates, (size_t)i), "id")), ship_on_cr,
	    t)) != CR_OK)
		ship_cr_unsent(t, st);
}

/* The carrier's shipment read back: bought already, or buy it now. */
static void
ship_label_got(struct ship_task *t, const struct cr_result *r)
{
	if (r->status != CR_OK) {
		ship_cr_failed(t, r, "read the shipment back");
		return;
	}
	if (json_is_object(json_object_get(r->obj, "postage_label"))) {
		ship_label_record(t, r->obj);
		return;
	}
	json_decref(t->shipment);
	t->shipment = json_incref(r->obj);
	ship_label_buy(t);
}

/* The rates as stored: what a person needs to see, no more. */
static json_t *
ship_rates_brief(json_t *rates)
{
	json_t *out = json_array(), *r;
	size_t i;

	json_array_foreach(rates, i, r) {
		if (i >= 50)
			break;
		json_array_append_new(out, json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?,s:O?}", "id",
		    json_object_get(r, "id"), "carrier", json_object_get(r, "carrier"), "service",
		    json_object_get(r, "service"), "rate", json_object_get(r, "rate"), "currency",
		    json_object_get(r, "currency"), "delivery_days", json_object_get(r, "delivery_days")));
	}
	return out;
}

static void
ship_rated(struct ship_task *t, json_t *row, const char *error)
{
	ship_label_buy(t);
}

static void
ship_on_created(struct ship_task *t, const struct cr_result *r)
{
	const char *id = json_string_value(json_object_get(r->obj, "id"));

	if (r->status != CR_OK) {
		ship_cr_failed(t, r, "rate the parcel");
		return;
	}
	if (id == NULL || strlen(id) > 100 || !json_is_array(json_object_get(r->obj, "rates"))) {
		ship_end(t, SHIP_RETRY, 0, "the carrier's shipment has no id or rates");
		return;
	}
	json_decref(t->shipment);
	t->shipment = json_incref(r->obj);
	ship_save(t, json_pack("{s:s,s:s,s:o}", "state", "rated", "carrier_shipment_id", id, "rates",
	    ship_rates_brief(json_object_get(r->obj, "rates"))), ship_rated);
}

/* A new carrier shipment for the package: from, to, parcel, our key as reference. */
static void
ship_label_create(struct ship_task *t)
{
	json_t *settings = json_object_get(t->ctx, "settings"), *pkg = ship_pkg(t), *to, *parcel, *shp;
	json_t *from = json_object_get(settings, "from_address");
	char why[300], ref[300];
	enum cr_status st;

	if (!json_is_object(from)) {
		ship_end(t, SHIP_FAIL, 0, "no from address for labels: set it with PUT "
		    "/api/settings/shipping");
		return;
	}
	if ((parcel = sp_parcel(json_object_get(t->ctx, "items"), json_object_get(pkg, "lines"),
	    json_object_get(settings, "parcel"), why, sizeof(why))) == NULL) {
		ship_end(t, SHIP_FAIL, 0, "%s", why);
		return;
	}
	if ((to = sp_to_address(json_object_get(t->ctx, "address"),
	    json_string_value(json_object_get(t->ctx, "name")),
	    json_string_value(json_object_get(t->ctx, "phone")),
	    json_string_value(json_object_get(t->ctx, "email")), why, sizeof(why))) == NULL) {
		json_decref(parcel);
		ship_end(t, SHIP_FAIL, 0, "%s", why);
		return;
	}
	snprintf(ref, sizeof(ref), "%s:%s", t->key, json_string_value(json_object_get(pkg, "key")));
	shp = json_pack("{s:o,s:O,s:o,s:s}", "to_address", to, "from_address", from, "parcel", parcel,
	    "reference", ref);
	t->cr_next = ship_on_created;
	st = cr_create_shipment(t->s->w->svc[SERVICE_CARRIER], shp, ship_on_cr, t);
	json_decref(shp);
	if (st != CR_OK)
		ship_cr_unsent(t, st);
}

static void
ship_label_package(struct ship_task *t)
{
	enum cr_status st;

	if (ship_row_is(t, "purchased") || ship_row_is(t, "shipping") || ship_row_is(t, "shipped")) {
		if (t->step == SHIP_QUOTE)
			json_array_append_new(json_object_get(t->doc, "packages"), json_pack(
			    "{s:O,s:[],s:n,s:s}", "package", json_object_get(ship_pkg(t), "key"),
			    "rates", "chosen", "bought", ship_row_str(t, "rate_id") != NULL ?
			    ship_row_str(t, "rate_id") : ""));
		ship_advance(t, NULL, NULL);
		return;
	}
	if (ship_row_is(t, "voiding") || ship_row_is(t, "void_rejected")) {
		ship_end(t, SHIP_FAIL, 0, "the package's label is being refunded (%s): finish that "
		    "first", ship_row_str(t, "state"));
		return;
	}
	if (ship_row_str(t, "carrier_shipment_id") == NULL) {
		ship_label_create(t);
		return;
	}
	/* Rated before: a purchase may have gone out, so read the shipment first. */
	t->cr_next = ship_label_got;
	if ((st = cr_get_shipment(t->s->w->svc[SERVICE_CARRIER],
	    ship_row_str(t, "carrier_shipment_id"), ship_on_cr, t)) != CR_OK)
		ship_cr_unsent(t, st);
}

/* ---- TikTok: ship ------------------------------------------------------------------ */

static void ship_tt_call(struct ship_task *t, json_t *row, const char *error);
static void ship_refused(struct ship_task *t, json_t *row, const char *error);

static void
ship_on_doc(struct ship_task *t, const struct tt_result *r)
{
	const char *url = json_string_value(json_object_get(r->data, "doc_url"));
	const char *tn = json_string_value(json_object_get(r->data, "tracking_number"));

	if (r->status != TT_OK) {
		ship_tt_failed(t, r, "Get Package Shipping Document");
		return;
	}
	if (url == NULL || strlen(url) > 2000 || (tn != NULL && strlen(tn) > 100)) {
		ship_end(t, SHIP_RETRY, 0, "TikTok's shipping document has no usable doc_url");
		return;
	}
	ship_save(t, json_pack("{s:s,s:s,s:s?}", "state", "shipped", "label_url", url,
	    "tracking_number", tn), ship_advance);
}

/* TikTok shipping: the label is TikTok's shipping document. */
static void
ship_fetch_doc(struct ship_task *t, json_t *row, const char *error)
{
	struct ttsign_param q[] = { { "document_type", "SHIPPING_LABEL" } };
	char path[200];

	snprintf(path, sizeof(path), TT_DOCS_PATH,
	    json_string_value(json_object_get(ship_pkg(t), "tiktok_id")));
	ship_tt(t, "GET", path, q, 1, NULL, ship_on_doc);
}

static bool
ship_is_tiktok(struct ship_task *t)
{
	return strcmp(json_string_value(json_object_get(t->ctx, "shipping_type")), "TIKTOK") == 0;
}

/* The package is shipped on TikTok: record it (TikTok shipping: then its document). */
static void
ship_shipped(struct ship_task *t, const char *package_id)
{
	util_count(&t->s->fig.ships, 1);
	log_info("package shipped on TikTok", "order=%s package=%s", t->order,
	    package_id != NULL ? package_id : "");
	/* Its lines' stock leaves with it (once: shipment_save). */
	ship_save(t, json_pack("{s:s,s:s?,s:O*}", "state", "shipped", "tiktok_package_id", package_id,
	    "consume_lines", json_object_get(ship_pkg(t), "lines")),
	    ship_is_tiktok(t) ? ship_fetch_doc : ship_advance);
}

static void
ship_on_ship(struct ship_task *t, const struct tt_result *r)
{
	const char *pid = json_string_value(json_object_get(ship_pkg(t), "tiktok_id"));

	if (r->status == TT_OK && pid == NULL)
		pid = json_string_value(json_object_get(r->data, "package_id"));
	if (r->status == TT_OK || ship_already_shipped(r)) {
		if (pid != NULL && (strlen(pid) > 64 || strspn(pid, "0123456789") != strlen(pid)))
			pid = NULL;
		ship_shipped(t, pid);
		return;
	}
	if (r->status == TT_FATAL || r->status == TT_TOKEN) {
		/* A definite refusal: nothing shipped, so the label can still be voided. */
		t->tt_result = *r;
		snprintf(t->why, sizeof(t->why), "%s", r->error);
		ship_save(t, json_pack("{s:s}", "state", ship_is_tiktok(t) ? "new" : "purchased"),
		    ship_refused);
		return;
	}
	ship_tt_failed(t, r, "shipping the package");
}

/* The ship call was refused: the row says so again; fail with TikTok's answer. */
static void
ship_refused(struct ship_task *t, json_t *row, const char *error)
{
	t->tt_result.error = t->why;
	ship_tt_failed(t, &t->tt_result, "shipping the package");
}

/* Get Package Detail after a crash: shipped already, or ship it now. */
static void
ship_on_pkg_detail(struct ship_task *t, const struct tt_result *r)
{
	const char *st = json_string_value(json_object_get(r->data, "package_status"));

	if (r->status != TT_OK) {
		ship_tt_failed(t, r, "Get Package Detail");
		return;
	}
	if (st != NULL && strcmp(st, "TO_FULFILL") != 0 && strcmp(st, "CANCELLED") != 0) {
		ship_shipped(t, json_string_value(json_object_get(ship_pkg(t), "tiktok_id")));
		return;
	}
	ship_tt_call(t, NULL, NULL);
}

/* The ship call itself, the intent being recorded. */
static void
ship_tt_call(struct ship_task *t, json_t *row, const char *error)
{
	json_t *pkg = ship_pkg(t), *settings = json_object_get(t->ctx, "settings"), *body;
	const char *pid = json_string_value(json_object_get(pkg, "tiktok_id"));
	const char *handover = json_string_value(json_object_get(settings, "handover_method"));
	char path[200];

	if (ship_is_tiktok(t)) {
		body = json_pack("{s:s}", "handover_method", handover != NULL ? handover : "PICKUP");
	} else if (pid != NULL) {
		body = json_pack("{s:{s:s,s:s}}", "self_shipment", "tracking_number",
		    ship_row_str(t, "tracking_number"), "shipping_provider_id",
		    ship_row_str(t, "shipping_provider_id"));
	} else {
		body = json_pack("{s:O,s:s,s:s}", "order_line_item_ids", json_object_get(pkg, "lines"),
		    "tracking_number", ship_row_str(t, "tracking_number"), "shipping_provider_id",
		    ship_row_str(t, "shipping_provider_id"));
		snprintf(path, sizeof(path), TT_MARK_PATH,
		    json_string_value(json_object_get(t->ctx, "tiktok_order_id")));
		ship_tt(t, "POST", path, NULL, 0, body, ship_on_ship);
		return;
	}
	snprintf(path, sizeof(path), TT_SHIP_PATH, pid);
	ship_tt(t, "POST", path, NULL, 0, body, ship_on_ship);
}

/* Seller shipping: TikTok's provider id for the label's carrier, then the call. */
static void
ship_with_provider(struct ship_task *t, json_t *providers)
{
	const char *carrier = ship_row_str(t, "carrier");
	const char *id = sp_provider_id(providers, carrier);

	if (id == NULL) {
		ship_end(t, SHIP_FAIL, 0, "TikTok lists no shipping provider named %.60s for delivery "
		    "option %.64s", carrier != NULL ? carrier : "(none)",
		    json_string_value(json_object_get(t->ctx, "delivery_option_id")));
		return;
	}
	ship_save(t, json_pack("{s:s,s:s}", "state", "shipping", "shipping_provider_id", id),
	    ship_tt_call);
}

static void
ship_provider_key(struct ship_task *t, char *buf, size_t size)
{
	snprintf(buf, size, "%s:%s", json_string_value(json_object_get(t->ctx, "shop_id")),
	    json_string_value(json_object_get(t->ctx, "delivery_option_id")));
}

static void
ship_on_providers(struct ship_task *t, const struct tt_result *r)
{
	json_t *list = json_object_get(r->data, "shipping_providers");
	struct ship_providers *p, *old;
	char key[200];

	if (r->status != TT_OK) {
		ship_tt_failed(t, r, "Get Shipping Providers");
		return;
	}
	if (!json_is_array(list) || json_array_size(list) > 1000) {
		ship_end(t, SHIP_RETRY, 0, "TikTok's shipping providers are not a list");
		return;
	}
	if (smap_count(t->s->providers) >= SHIP_PROVIDERS_MAX) {
		smap_free(t->s->providers, ship_providers_free);
		t->s->providers = smap_new();
	}
	ship_provider_key(t, key, sizeof(key));
	p = xcalloc(1, sizeof(*p));
	p->list = json_incref(list);
	p->at_ms = (int64_t)worker_now_ms();
	if ((old = smap_put(t->s->providers, key, p)) != NULL)
		ship_providers_free(old);
	ship_with_provider(t, list);
}

static void
ship_seller_package(struct ship_task *t)
{
	const char *pid = json_string_value(json_object_get(ship_pkg(t), "tiktok_id"));
	const char *doid = json_string_value(json_object_get(t->ctx, "delivery_option_id"));
	struct ship_providers *p;
	char path[200], key[200];

	if (ship_row_is(t, "shipping") && pid != NULL) {
		snprintf(path, sizeof(path), TT_PKG_PATH, pid);
		ship_tt(t, "GET", path, NULL, 0, NULL, ship_on_pkg_detail);
		return;
	}
	if (ship_row_is(t, "shipping")) {
		ship_tt_call(t, NULL, NULL);
		return;
	}
	if (!ship_row_is(t, "purchased")) {
		ship_end(t, SHIP_FAIL, 0, "package %s has no label bought (state %s): buy one first",
		    json_string_value(json_object_get(ship_pkg(t), "key")),
		    ship_row_str(t, "state") != NULL ? ship_row_str(t, "state") : "none");
		return;
	}
	if (doid == NULL) {
		ship_end(t, SHIP_FAIL, 0, "the order has no delivery option: TikTok's provider id "
		    "cannot be found");
		return;
	}
	ship_provider_key(t, key, sizeof(key));
	p = smap_get(t->s->providers, key);
	if (p != NULL && (int64_t)worker_now_ms() - p->at_ms < t->s->w->cfg->shipping.provider_cache) {
		ship_with_provider(t, p->list);
		return;
	}
	snprintf(path, sizeof(path), TT_PROVIDERS_PATH, doid);
	ship_tt(t, "GET", path, NULL, 0, NULL, ship_on_providers);
}

static void
ship_tiktok_package(struct ship_task *t)
{
	const char *pid = json_string_value(json_object_get(ship_pkg(t), "tiktok_id"));
	char path[200];

	if (pid == NULL) {
		ship_end(t, SHIP_FAIL, 0, "TikTok gave the order no package to ship");
		return;
	}
	if (ship_row_is(t, "shipped")) {
		if (ship_row_str(t, "label_url") == NULL)
			ship_fetch_doc(t, NULL, NULL);
		else
			ship_advance(t, NULL, NULL);
		return;
	}
	if (ship_row_is(t, "shipping")) {
		snprintf(path, sizeof(path), TT_PKG_PATH, pid);
		ship_tt(t, "GET", path, NULL, 0, NULL, ship_on_pkg_detail);
		return;
	}
	/* None yet, or "new" (a refused call): the intent, then the call. */
	ship_save(t, json_pack("{s:s,s:s}", "state", "shipping", "handover_method",
	    json_string_value(json_object_get(json_object_get(t->ctx, "settings"),
	    "handover_method")) != NULL ? json_string_value(json_object_get(json_object_get(t->ctx,
	    "settings"), "handover_method")) : "PICKUP"), ship_tt_call);
}

static void
ship_ship_package(struct ship_task *t)
{
	if (ship_row_is(t, "shipped") && !ship_is_tiktok(t))
		ship_advance(t, NULL, NULL);
	else if (ship_is_tiktok(t))
		ship_tiktok_package(t);
	else
		ship_seller_package(t);
}

/* ---- TikTok: confirm ---------------------------------------------------------------- */

/*
 * Confirmations are batched per shop: the ones that come in one loop turn
 * (up to TT_DETAIL_MAX) share one Get Order Detail and one ostore_apply,
 * which stores TikTok's view of every order that shipped, so the status
 * here is TikTok's at once, not at the next webhook or poll.
 */
struct ship_confirms {
	struct ship	*s;
	char		shop[37];
	int		n;
	struct ship_task *tasks[TT_DETAIL_MAX];
	json_t		*done;		/* out: the tasks whose order TikTok reports shipped */
};

static void
ship_confirms_free(struct ship_confirms *b)
{
	if (b->done != NULL)
		json_decref(b->done);
	free(b);
}

/* Every task of the batch from `from` on ends with v and the same why. */
static void
ship_confirms_end(struct ship_confirms *b, int from, enum ship_verdict v, int64_t delay,
    const char *why)
{
	for (int i = from; i < b->n; i++)
		if (b->tasks[i] != NULL)
			ship_end(b->tasks[i], v, delay, "%s", why);
	ship_confirms_free(b);
}

static void
ship_on_snapshots(const char *error, const struct ostore_applied *r, void *arg)
{
	struct ship_confirms *b = arg;

	for (int i = 0; i < b->n; i++) {
		struct ship_task *t = b->tasks[i];

		if (error != NULL)
			ship_end(t, SHIP_RETRY, 0, "storing TikTok's view of the order failed: %s",
			    error);
		else
			ship_end(t, SHIP_DONE, 0, "TikTok reports %s", t->why);
	}
	ship_confirms_free(b);
}

/* The task's order in TikTok's answer: shipped (kept), or not yet (ended). */
static bool
ship_confirm_one(struct ship_task *t, json_t *orders, json_t *records)
{
	const char *tid = json_string_value(json_object_get(t->ctx, "tiktok_order_id")), *id, *st;
	char err[200];
	json_t *o, *rec;
	size_t i;

	json_array_foreach(orders, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "id")) != NULL ?
		    json_string_value(json_object_get(o, "id")) : "", tid) != 0)
			continue;
		st = json_string_value(json_object_get(o, "status"));
		for (size_t k = 0; st != NULL && ship_shipped_statuses[k] != NULL; k++) {
			if (strcmp(st, ship_shipped_statuses[k]) != 0)
				continue;
			snprintf(t->why, sizeof(t->why), "%s", st);
			if ((rec = apply_normalize(o, &id, err, sizeof(err))) != NULL)
				json_array_append_new(records, rec);
			return true;
		}
		ship_end(t, SHIP_RETRY, 0, "TikTok still reports the order %.40s",
		    st != NULL ? st : "(no status)");
		return false;
	}
	ship_end(t, SHIP_RETRY, 0, "TikTok does not know the order");
	return false;
}

static void
ship_on_confirms(const struct tt_result *r, void *arg)
{
	struct ship_confirms *b = arg;
	json_t *records = json_array(), *orders = json_object_get(r->data, "orders");
	int kept = 0;

	if (r->status != TT_OK) {
		char why[300];

		snprintf(why, sizeof(why), "Get Order Detail on TikTok failed: %s", r->error);
		json_decref(records);
		ship_confirms_end(b, 0, r->status == TT_RETRY ? SHIP_RETRY : SHIP_FAIL,
		    r->retry_after_ms, why);
		return;
	}
	for (int i = 0; i < b->n; i++)
		if (ship_confirm_one(b->tasks[i], orders, records))
			b->tasks[kept++] = b->tasks[i];
	b->n = kept;
	if (kept == 0 || json_array_size(records) == 0) {
		json_decref(records);
		ship_on_snapshots(NULL, NULL, b);
		return;
	}
	if (!ostore_apply(b->s->w, b->shop, records, "{}", ship_on_snapshots, b))
		ship_confirms_end(b, 0, SHIP_RETRY, 0, "the database is unavailable");
	json_decref(records);
}

/* Send the shop's batch: one Get Order Detail for all its orders. */
static void
ship_confirm_flush(struct ship_confirms *b)
{
	struct tt *tt = b->s->w->svc[SERVICE_TT];
	const char *ids[TT_DETAIL_MAX];
	struct tt_creds c;
	enum tt_status st;

	smap_del(b->s->confirms, b->shop);
	if (b->s->closing) {
		ship_confirms_end(b, 0, SHIP_RETRY, 0, "shutting down");
		return;
	}
	for (int i = 0; i < b->n; i++)
		ids[i] = json_string_value(json_object_get(b->tasks[i]->ctx, "tiktok_order_id"));
	/* The shop's credentials, as every task of the batch has them. */
	if (!ship_creds(b->tasks[0], &c)) {
		/* ship_creds ended the first task; the others share its fate. */
		b->tasks[0] = NULL;
		ship_confirms_end(b, 1, SHIP_RETRY, 0, "the order's shop cannot be used now");
		return;
	}
	st = tt_get_orders(tt, &c, ids, (size_t)b->n, ship_on_confirms, b);
	if (st == TT_OPEN)
		ship_confirms_end(b, 0, SHIP_WAIT, tt_breaker_wait_ms(tt), "the TikTok breaker is open");
	else if (st != TT_OK)
		ship_confirms_end(b, 0, SHIP_WAIT, 1000, "the TikTok client's queue is full");
}

/* End of the loop turn: every shop's batch goes. */
static void
ship_on_confirm_kick(evutil_socket_t fd, short what, void *arg)
{
	struct ship *s = arg;
	struct smap *all = s->confirms;
	const char *k;
	void *v;
	size_t pos = 0, n = 0;
	struct ship_confirms *list[SHIP_CONFIRM_SHOPS_MAX];

	while (smap_next(all, &pos, &k, &v) && n < SHIP_CONFIRM_SHOPS_MAX)
		list[n++] = v;
	for (size_t i = 0; i < n; i++)
		ship_confirm_flush(list[i]);
	if (smap_count(s->confirms) > 0)
		event_active(s->confirm_kick, 0, 0);
}

static void
ship_confirm(struct ship_task *t)
{
	struct ship *s = t->s;
	const char *shop = json_string_value(json_object_get(t->ctx, "shop_id"));
	struct ship_confirms *b;

	if (shop == NULL || strlen(shop) >= sizeof(b->shop)) {
		ship_end(t, SHIP_FAIL, 0, "the order has no TikTok shop");
		return;
	}
	if ((b = smap_get(s->confirms, shop)) == NULL) {
		b = xcalloc(1, sizeof(*b));
		b->s = s;
		snprintf(b->shop, sizeof(b->shop), "%s", shop);
		smap_put(s->confirms, shop, b);
		event_active(s->confirm_kick, 0, 0);
	}
	b->tasks[b->n++] = t;
	if (b->n == TT_DETAIL_MAX)
		ship_confirm_flush(b);
}

/* ---- voids ------------------------------------------------------------------------- */

static void
ship_void_rejected(struct ship_task *t, json_t *row, const char *error)
{
	json_t *cost = json_object_get(ship_row(t), "cost");
	const char *c = ship_row_str(t, "carrier"), *sv = ship_row_str(t, "service");
	const char *cur = ship_row_str(t, "currency"), *tn = ship_row_str(t, "tracking_number");

	ship_end(t, SHIP_FAIL, 0, "the carrier refused to refund the label of package %s "
	    "(%s %s, cost %.2f %s, tracking %s): refund it by hand, then skip this step",
	    json_string_value(json_object_get(ship_pkg(t), "key")), c != NULL ? c : "?",
	    sv != NULL ? sv : "?", json_is_number(cost) ? json_number_value(cost) : 0.0,
	    cur != NULL ? cur : "", tn != NULL ? tn : "?");
}

static void
ship_on_refund(struct ship_task *t, const struct cr_result *r)
{
	const char *rs = json_string_value(json_object_get(r->obj, "refund_status"));

	if (r->status != CR_OK) {
		ship_cr_failed(t, r, "refund the label");
		return;
	}
	if (rs != NULL && strcmp(rs, "rejected") == 0) {
		util_count(&t->s->fig.refused, 1);
		ship_save(t, json_pack("{s:s,s:s}", "state", "void_rejected", "refund_status", rs),
		    ship_void_rejected);
		return;
	}
	util_count(&t->s->fig.voids, 1);
	t->voided++;
	ship_save(t, json_pack("{s:s,s:s?}", "state", "voided", "refund_status", rs), ship_advance);
}

static void
ship_void_send(struct ship_task *t, json_t *row, const char *error)
{
	enum cr_status st;

	t->cr_next = ship_on_refund;
	if ((st = cr_refund(t->s->w->svc[SERVICE_CARRIER], ship_row_str(t, "carrier_shipment_id"),
	    ship_on_cr, t)) != CR_OK)
		ship_cr_unsent(t, st);
}

static void
ship_void_package(struct ship_task *t)
{
	if (ship_row(t) == NULL || ship_row_is(t, "shipping") || ship_row_is(t, "shipped") ||
	    ship_row_str(t, "carrier_shipment_id") == NULL) {
		/* Nothing bought from the carrier, or on its way: nothing to refund. */
		ship_advance(t, NULL, NULL);
	} else if (ship_row_is(t, "rated")) {
		t->voided++;
		ship_save(t, json_pack("{s:s}", "state", "voided"), ship_advance);
	} else if (ship_row_is(t, "void_rejected")) {
		ship_void_rejected(t, NULL, NULL);
	} else {
		ship_save(t, json_pack("{s:s}", "state", "voiding"), ship_void_send);
	}
}

/* ---- the work list ---------------------------------------------------------------- */

/* The live shipment of package id (or of the whole order), or NULL. */
static json_t *
ship_find_row(json_t *ctx, const char *key, const char *tiktok_id)
{
	json_t *r;
	size_t i;

	json_array_foreach(json_object_get(ctx, "shipments"), i, r) {
		const char *k = json_string_value(json_object_get(r, "package_key"));
		const char *p = json_string_value(json_object_get(r, "tiktok_package_id"));

		if ((k != NULL && strcmp(k, key) == 0) || (tiktok_id != NULL && p != NULL &&
		    strcmp(p, tiktok_id) == 0))
			return r;
	}
	return NULL;
}

/* Every line item id of the order. */
static json_t *
ship_all_lines(json_t *ctx)
{
	json_t *out = json_array(), *it, *id;
	size_t i, k;

	json_array_foreach(json_object_get(ctx, "items"), i, it)
		json_array_foreach(json_object_get(it, "line_item_ids"), k, id)
			json_array_append(out, id);
	return out;
}

/* The packages: TikTok's, else (seller shipping) the whole order as one. */
static json_t *
ship_work(json_t *ctx)
{
	json_t *work = json_array(), *p, *row;
	size_t i;

	json_array_foreach(json_object_get(ctx, "packages"), i, p) {
		const char *id = json_string_value(json_object_get(p, "id"));

		if (id == NULL)
			continue;
		row = ship_find_row(ctx, id, id);
		if (row == NULL && json_array_size(json_object_get(ctx, "packages")) == 1)
			/* Mark Package As Shipped made this package; its answer was lost. */
			row = ship_find_row(ctx, SHIP_WHOLE_ORDER, NULL);
		json_array_append_new(work, json_pack("{s:s,s:s,s:O,s:O?}", "key",
		    row != NULL ? json_string_value(json_object_get(row, "package_key")) : id,
		    "tiktok_id", id, "lines", json_object_get(p, "line_item_ids"), "row", row));
	}
	if (json_array_size(work) == 0 && strcmp(json_string_value(json_object_get(ctx,
	    "shipping_type")), "SELLER") == 0) {
		row = ship_find_row(ctx, SHIP_WHOLE_ORDER, NULL);
		json_array_append_new(work, json_pack("{s:s,s:O?,s:o,s:O?}", "key", SHIP_WHOLE_ORDER,
		    "tiktok_id", json_object_get(row, "tiktok_package_id"), "lines",
		    ship_all_lines(ctx), "row", row));
	}
	return work;
}

/* The next package of the step, or the end of the step. */
static void
ship_next(struct ship_task *t)
{
	json_decref(t->shipment);
	t->shipment = NULL;
	if (t->at >= json_array_size(t->work)) {
		if (t->step == SHIP_VOID && t->api && t->voided == 0)
			ship_end(t, SHIP_INVALID, 0, "nothing to void: no label is bought and not shipped");
		else
			ship_end(t, SHIP_DONE, 0, "%zu package(s)", json_array_size(t->work));
		return;
	}
	switch (t->step) {
	case SHIP_LABEL:
	case SHIP_QUOTE:
		ship_label_package(t);
		break;
	case SHIP_PACKAGES:
		ship_ship_package(t);
		break;
	default:
		ship_void_package(t);
		break;
	}
}

static void
ship_on_ctx(struct ship_task *t, json_t *ctx, const char *error)
{
	if (error != NULL) {
		ship_end(t, SHIP_RETRY, 0, "reading the order's shipping failed: %s", error);
		return;
	}
	if (ctx == NULL) {
		ship_end(t, SHIP_NOT_FOUND, 0, "no such order");
		return;
	}
	t->ctx = json_incref(ctx);
	t->work = ship_work(ctx);
	if (t->step == SHIP_CONFIRM) {
		ship_confirm(t);
		return;
	}
	if ((t->step == SHIP_LABEL || t->step == SHIP_QUOTE) && ship_is_tiktok(t)) {
		ship_end(t, t->step == SHIP_LABEL ? SHIP_DONE : SHIP_INVALID, 0,
		    "TikTok shipping: TikTok provides the label");
		return;
	}
	if (t->step == SHIP_PACKAGES && json_array_size(t->work) == 0) {
		ship_end(t, SHIP_FAIL, 0, "TikTok gave the order no package to ship");
		return;
	}
	ship_next(t);
}

struct ship_task *
ship_run(struct worker *w, enum ship_step step, const char *order, const char *creator,
    const char *key, ship_cb *cb, void *arg)
{
	struct ship_task *t = ship_api(w, step, order, creator, key, NULL, cb, arg);

	if (t != NULL)
		t->api = false;
	return t;
}

struct ship_task *
ship_api(struct worker *w, enum ship_step step, const char *order, const char *creator,
    const char *key, const char *rate_id, ship_cb *cb, void *arg)
{
	struct ship_task *t = xcalloc(1, sizeof(*t));
	struct pg_batch *b;

	snprintf(t->rate_id, sizeof(t->rate_id), "%s", rate_id != NULL ? rate_id : "");
	t->api = true;
	if (step == SHIP_QUOTE)
		t->doc = json_pack("{s:[]}", "packages");

	t->s = w->svc[SERVICE_SHIP];
	t->step = step;
	snprintf(t->order, sizeof(t->order), "%s", order);
	snprintf(t->creator, sizeof(t->creator), "%s", creator);
	snprintf(t->key, sizeof(t->key), "%s", key);
	t->cb = cb;
	t->arg = arg;
	t->db_next = ship_on_ctx;
	b = pg_batch_new(ship_on_db, t);
	pg_batch_add(b, true, "ship_ctx", 2, (const char *[]){ order, creator });
	if (t->s->closing || pg_submit(w->pg, b) != PG_OK) {
		/* Not started: the caller hears it now, not through cb. */
		ship_task_free(t);
		return NULL;
	}
	return t;
}

/* ---- metrics ------------------------------------------------------------------------ */

void
ship_metrics(struct evbuffer *out, struct worker_set *s)
{
	static const struct { const char *name, *help; size_t off; } rows[] = {
		{ "labels_bought_total", "Labels bought from the carrier.",
		    offsetof(struct ship_figures, labels) },
		{ "packages_shipped_total", "Packages shipped on TikTok.",
		    offsetof(struct ship_figures, ships) },
		{ "labels_voided_total", "Labels refunded by the carrier.",
		    offsetof(struct ship_figures, voids) },
		{ "refunds_refused_total", "Label refunds the carrier refused.",
		    offsetof(struct ship_figures, refused) },
		{ "step_failures_total", "Shipping steps that need a person.",
		    offsetof(struct ship_figures, fails) },
		{ "step_retries_total", "Shipping steps to be tried again.",
		    offsetof(struct ship_figures, retries) },
	};

	struct ship *w0 = s->workers[0].svc[SERVICE_SHIP];

	if (atomic_load(&w0->at_risk) >= 0)
		evbuffer_add_printf(out,
		    "# HELP orderflow_shipping_orders_at_risk Orders to ship whose TikTok ship-by time "
		    "is within shipping.sla_warning.\n"
		    "# TYPE orderflow_shipping_orders_at_risk gauge\n"
		    "orderflow_shipping_orders_at_risk %lld\n"
		    "# HELP orderflow_shipping_late_dispatches Orders to ship past their TikTok ship-by "
		    "time.\n"
		    "# TYPE orderflow_shipping_late_dispatches gauge\n"
		    "orderflow_shipping_late_dispatches %lld\n", (long long)atomic_load(&w0->at_risk),
		    (long long)atomic_load(&w0->late));
	for (size_t k = 0; k < NELEM(rows); k++) {
		unsigned long long sum = 0;

		for (int i = 0; i < s->n; i++) {
			struct ship *sh = s->workers[i].svc[SERVICE_SHIP];

			sum += atomic_load((atomic_ullong *)((char *)&sh->fig + rows[k].off));
		}
		evbuffer_add_printf(out, "# HELP orderflow_shipping_%s %s\n"
		    "# TYPE orderflow_shipping_%s counter\norderflow_shipping_%s %llu\n", rows[k].name,
		    rows[k].help, rows[k].name, rows[k].name, sum);
	}
}
