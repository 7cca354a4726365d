/*
 * rest_shipping: shipping settings, rates, labels, voids and the drift report.
 */
#include "config.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/order.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/rest_shipping.h"
#include "orderflow/ship.h"
#include "orderflow/ship_plan.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

/* Orders a drift report lists at most, and by default. */
#define REST_DRIFT_MAX 1000
#define REST_DRIFT_DEFAULT 100

#define REST_SHIP_SETTINGS_JSON \
    "json_build_object('from_address', s.from_address, 'parcel', coalesce(s.parcel, '{}')," \
    " 'rate_rule', coalesce(s.rate_rule, '{\"choose\": \"cheapest\"}')," \
    " 'handover_method', coalesce(s.handover_method, 'PICKUP'), 'version', coalesce(s.version, 0)," \
    " 'updated_at', s.updated_at)::text"

static const char rest_ship_settings_sql[] =
    "SELECT " REST_SHIP_SETTINGS_JSON " FROM (SELECT $1::uuid AS u) x"
    " LEFT JOIN shipping_settings s ON s.user_id = x.u";

/* Replace the settings when the version matches ($3 null: any; 0: none stored yet). */
static const char rest_ship_settings_put_sql[] =
    "WITH cur AS (SELECT version FROM shipping_settings WHERE user_id = $1::uuid FOR UPDATE),"
    " ok AS (SELECT $3::integer IS NULL OR coalesce((SELECT version FROM cur), 0) = $3::integer"
    "  AS ok),"
    " s AS (INSERT INTO shipping_settings AS s (user_id, from_address, parcel, rate_rule,"
    "  handover_method) SELECT $1::uuid, $2::jsonb -> 'from_address',"
    "  coalesce($2::jsonb -> 'parcel', '{}'), coalesce($2::jsonb -> 'rate_rule',"
    "  '{\"choose\": \"cheapest\"}'), coalesce($2::jsonb ->> 'handover_method', 'PICKUP')"
    "  FROM ok WHERE ok.ok"
    "  ON CONFLICT (user_id) DO UPDATE SET from_address = EXCLUDED.from_address,"
    "  parcel = EXCLUDED.parcel, rate_rule = EXCLUDED.rate_rule,"
    "  handover_method = EXCLUDED.handover_method, version = s.version + 1, updated_at = now()"
    "  RETURNING s.*),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'shipping.settings', 'creator', $1,"
    "  to_jsonb(s) - 'user_id' FROM s RETURNING 1)"
    " SELECT (SELECT ok FROM ok), (SELECT " REST_SHIP_SETTINGS_JSON " FROM s),"
    "  (SELECT count(*) FROM au), coalesce((SELECT version FROM cur), 0)";

static const char rest_ship_resolve_by_id_sql[] =
    "SELECT o.id::text FROM orders o WHERE o.user_id = $1::uuid AND o.id = $2::uuid";
static const char rest_ship_resolve_by_tiktok_sql[] =
    "SELECT o.id::text FROM orders o WHERE o.user_id = $1::uuid AND o.tiktok_order_id = $2";

/* What the API did, audited: the order's shipments after it. */
static const char rest_ship_audit_sql[] =
    "INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    " VALUES ($1::uuid, 'user:' || $1, $2, 'order', $3, $4::jsonb)";

/*
 * Orders whose status here and TikTok's disagree (as the last webhook or
 * polling pass saw TikTok's), unchanged for longer than the sync interval.
 * Statuses are compared by rank: our processing refines TikTok's
 * AWAITING_SHIPMENT and is no drift.
 */
static const char rest_ship_drift_sql[] =
    "WITH m AS (SELECT key AS tiktok, value AS status FROM jsonb_each_text($2::jsonb)),"
    " r(status, rank) AS (VALUES ('pending', 0), ('confirmed', 1), ('processing', 1),"
    "  ('shipped', 2), ('delivered', 3), ('returned', 4), ('cancelled', -1)),"
    " d AS (SELECT o.id, o.tiktok_order_id, o.order_status, o.tiktok_status,"
    "  m.status AS tiktok_means, o.workflow_status, o.updated_at, o.last_tiktok_sync"
    "  FROM orders o JOIN m ON m.tiktok = o.tiktok_status"
    "  JOIN r ours ON ours.status = o.order_status::text JOIN r theirs ON theirs.status = m.status"
    "  WHERE o.user_id = $1::uuid AND ours.rank <> theirs.rank"
    "  AND o.updated_at < now() - $3::bigint * interval '1 millisecond'"
    "  ORDER BY o.updated_at LIMIT $4::integer)"
    " SELECT json_build_object('sync_interval_ms', $3::bigint, 'count', (SELECT count(*) FROM d),"
    "  'orders', coalesce((SELECT json_agg(json_build_object('id', d.id, 'tiktok_order_id',"
    "  d.tiktok_order_id, 'order_status', d.order_status, 'tiktok_status', d.tiktok_status,"
    "  'tiktok_means', d.tiktok_means, 'workflow_status', d.workflow_status, 'since',"
    "  d.updated_at, 'last_tiktok_sync', d.last_tiktok_sync) ORDER BY d.updated_at) FROM d),"
    "  '[]'))::text";

struct rest_ship_call {
	struct rest_call call;		/* first */
	bool		by_uuid;
	enum ship_step	step;
	char		order[37];	/* the order's UUID once resolved */
	char		rate_id[101];
	long long	if_match;
	int		limit;
};

static struct rest_ship_call *
rest_ship_new(void)
{
	return xcalloc(1, sizeof(struct rest_ship_call));
}

/* ---- settings ------------------------------------------------------------------ */

static void
rest_ship_on_settings(struct pg_batch *b, void *arg)
{
	struct rest_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("shipping settings read failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(c, b, "the settings cannot be read now");
		return;
	}
	rest_reply(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

static void
rest_ship_settings_run(struct rest_call *rc)
{
	struct pg_batch *b = pg_batch_new(rest_ship_on_settings, rc);

	pg_batch_add(b, true, "rest_ship_settings", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

void
rest_shipping_settings(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_ship_new()->call, rest_ship_settings_run);
}

static void
rest_ship_on_put(struct pg_batch *b, void *arg)
{
	struct rest_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("shipping settings write failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(c, b, "the settings cannot be written now");
		return;
	}
	if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		rest_error(c, 412, "version_mismatch", "the settings are at version %s: read them "
		    "again", PQgetvalue(r, 0, 3));
		return;
	}
	rest_reply(c, 200, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
}

static void
rest_ship_settings_put_run(struct rest_call *rc)
{
	struct rest_ship_call *c = (struct rest_ship_call *)rc;
	char why[300], ver[24];
	struct pg_batch *b;
	json_t *doc;
	char *json;

	if ((c->if_match = rest_if_match_new(rc)) == -1) {
		rest_error(rc, 400, "invalid_body", "If-Match must be the settings' version");
		return;
	}
	if ((doc = rest_body(rc)) == NULL)
		return;
	if (sp_settings_invalid(doc, why, sizeof(why)) != NULL) {
		json_decref(doc);
		rest_error(rc, 400, "invalid_body", "%s", why);
		return;
	}
	snprintf(ver, sizeof(ver), "%lld", c->if_match == REST_IF_NONE ? 0 : c->if_match);
	json = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	b = pg_batch_new(rest_ship_on_put, rc);
	pg_batch_add(b, true, "rest_ship_settings_put", 3, (const char *[]){ rc->creator, json,
	    c->if_match == 0 ? NULL : ver });
	free(json);
	rest_submit(rc, b);
}

void
rest_shipping_settings_put(struct httpd_req *hr)
{
	struct rest_ship_call *c;

	if (!rest_no_query(hr))
		return;
	c = rest_ship_new();
	rest_begin(hr, &c->call, rest_ship_settings_put_run);
}

/* ---- rates, label, void ---------------------------------------------------------- */

static void
rest_ship_on_audited(struct pg_batch *b, void *arg)
{
	if (pg_batch_error(b) != NULL)
		log_warn("shipping audit not written", "error=%s", log_quote(pg_batch_error(b)));
}

static void
rest_ship_on_done(const struct ship_outcome *o, void *arg)
{
	struct rest_ship_call *c = arg;
	static const char *const audit[] = {
		[SHIP_LABEL] = "shipping.label", [SHIP_VOID] = "shipping.void",
	};
	json_t *doc;
	char *text;

	switch (o->verdict) {
	case SHIP_DONE:
		break;
	case SHIP_NOT_FOUND:
		rest_error(&c->call, 404, "not_found", "no such order");
		return;
	case SHIP_INVALID:
		rest_error(&c->call, 409, "not_applicable", "%s", o->error);
		return;
	case SHIP_FAIL:
		rest_error(&c->call, 422, "shipping_failed", "%s", o->error);
		return;
	default:
		rest_unavailable(&c->call, o->error);
		return;
	}
	doc = c->step == SHIP_QUOTE ? json_incref(o->doc) :
	    json_pack("{s:b,s:s,s:O}", "success", 1, "result", o->error, "packages", o->doc);
	/* Nine digits: costs as 4.55, not 4.5499999999999998. */
	text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9));
	json_decref(doc);
	if (c->step != SHIP_QUOTE) {
		/* Audit on a best-effort basis: the carrier acted; the answer must not wait. */
		struct pg_batch *b = pg_batch_new(rest_ship_on_audited, NULL);

		pg_batch_add(b, true, "rest_ship_audit", 4, (const char *[]){ c->call.creator,
		    audit[c->step], c->order, text });
		if (pg_submit(worker_self()->pg, b) != PG_OK)
			log_warn("shipping audit not written", "order=%s", c->order);
	}
	rest_reply(&c->call, 200, text, strlen(text));
	free(text);
}

static void
rest_ship_run_step(struct rest_ship_call *c)
{
	char key[80];

	snprintf(key, sizeof(key), "api:%08x%08x", util_random(), util_random());
	if (ship_api(worker_self(), c->step, c->order, c->call.creator, key,
	    c->rate_id[0] != '\0' ? c->rate_id : NULL, rest_ship_on_done, c) == NULL)
		rest_unavailable(&c->call, "the database is unavailable");
}

static void
rest_ship_on_resolved(struct pg_batch *b, void *arg)
{
	struct rest_ship_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL) {
		rest_db_failed(&c->call, b, "the order cannot be read now");
		return;
	}
	if (PQntuples(r) != 1) {
		rest_error(&c->call, 404, "not_found", "no such order");
		return;
	}
	snprintf(c->order, sizeof(c->order), "%s", PQgetvalue(r, 0, 0));
	rest_ship_run_step(c);
}

static void
rest_ship_resolve(struct rest_call *rc)
{
	struct rest_ship_call *c = (struct rest_ship_call *)rc;
	struct pg_batch *b = pg_batch_new(rest_ship_on_resolved, c);

	pg_batch_add(b, true, c->by_uuid ? "rest_ship_resolve_by_id" : "rest_ship_resolve_by_tiktok",
	    2, (const char *[]){ rc->creator, rc->path_id });
	rest_submit(rc, b);
}

static void
rest_ship_label_run(struct rest_call *rc)
{
	struct rest_ship_call *c = (struct rest_ship_call *)rc;
	json_t *doc = rest_body(rc), *v;
	const char *k, *id;

	if (doc == NULL)
		return;
	json_object_foreach(doc, k, v) {
		id = json_string_value(v);
		if (strcmp(k, "rate_id") != 0 || id == NULL || id[0] == '\0' || strlen(id) > 100 ||
		    strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
		    strlen(id)) {
			json_decref(doc);
			rest_error(rc, 400, "invalid_body", "the body may hold only \"rate_id\": a rate "
			    "id of GET /api/orders/{id}/shipping/rates");
			return;
		}
		snprintf(c->rate_id, sizeof(c->rate_id), "%s", id);
	}
	json_decref(doc);
	rest_ship_resolve(rc);
}

/* An /api/orders/{id}/shipping/... request. */
static void
rest_ship_begin(struct httpd_req *hr, enum ship_step step, rest_fn *run)
{
	struct rest_ship_call *c;
	bool by_uuid;

	if (!rest_no_query(hr) || !rest_order_id(hr, &by_uuid))
		return;
	c = rest_ship_new();
	c->by_uuid = by_uuid;
	c->step = step;
	rest_begin(hr, &c->call, run);
}

void
rest_shipping_rates(struct httpd_req *hr)
{
	rest_ship_begin(hr, SHIP_QUOTE, rest_ship_resolve);
}

void
rest_shipping_label(struct httpd_req *hr)
{
	rest_ship_begin(hr, SHIP_LABEL, rest_ship_label_run);
}

void
rest_shipping_void(struct httpd_req *hr)
{
	rest_ship_begin(hr, SHIP_VOID, rest_ship_resolve);
}

/* ---- drift --------------------------------------------------------------------------- */

static const char *
rest_ship_drift_param(void *arg, const char *key, const char *value)
{
	struct rest_ship_call *c = arg;
	long long n;

	if (strcmp(key, "limit") != 0)
		return "is not known (only limit)";
	if ((n = rest_number(value, REST_DRIFT_MAX)) < 0)
		return "must be a whole number from 1 to 1000";
	c->limit = (int)n;
	return NULL;
}

static void
rest_ship_drift_run(struct rest_call *rc)
{
	struct rest_ship_call *c = (struct rest_ship_call *)rc;
	char map[ORDER_MACHINE_JSON_MAX], ms[24], lim[16];
	struct pg_batch *b = pg_batch_new(rest_ship_on_settings, rc);

	order_tiktok_map_json(map, sizeof(map));
	snprintf(ms, sizeof(ms), "%lld", (long long)worker_self()->cfg->tiktok.sync_interval);
	snprintf(lim, sizeof(lim), "%d", c->limit);
	pg_batch_add(b, true, "rest_ship_drift", 4, (const char *[]){ rc->creator, map, ms, lim });
	rest_submit(rc, b);
}

void
rest_shipping_drift(struct httpd_req *hr)
{
	struct rest_ship_call *c = rest_ship_new();

	c->limit = REST_DRIFT_DEFAULT;
	if (!rest_query(hr, rest_ship_drift_param, c)) {
		free(c);
		return;
	}
	rest_begin(hr, &c->call, rest_ship_drift_run);
}

void
rest_shipping_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "rest_ship_settings", rest_ship_settings_sql);
	pg_pool_prepare(pg, "rest_ship_settings_put", rest_ship_settings_put_sql);
	pg_pool_prepare(pg, "rest_ship_audit", rest_ship_audit_sql);
	pg_pool_prepare(pg, "rest_ship_drift", rest_ship_drift_sql);
	pg_pool_prepare(pg, "rest_ship_resolve_by_id", rest_ship_resolve_by_id_sql);
	pg_pool_prepare(pg, "rest_ship_resolve_by_tiktok", rest_ship_resolve_by_tiktok_sql);
}
