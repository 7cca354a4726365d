/*
 * rest_inventory: the creators' stock, by SKU.
 *
 * Every change is one statement (the stock row locked, the check, the
 * write, the audit row); what can wake runs waiting for stock (more on
 * hand) then asks the engine to wake what the stock can serve
 * (wf_stock_changed).  on_hand can never go below what is reserved: the
 * statement refuses (409), the table's CHECK is only the backstop.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/rest_inventory.h"
#include "orderflow/ship_plan.h"
#include "orderflow/util.h"
#include "orderflow/wf.h"
#include "orderflow/worker.h"

#define REST_INV_SKU_MAX	100		/* characters of a SKU */
#define REST_INV_NAME_MAX	255		/* characters of a product name */
#define REST_INV_QTY_MAX	100000000	/* units on hand, or of one adjustment */

static const char rest_inv_item_json[] =
    "json_build_object('sku', i.sku, 'product_name', i.product_name, 'on_hand', i.on_hand,"
    " 'reserved', i.reserved, 'available', i.on_hand - i.reserved, 'low_stock', i.low_stock,"
    " 'parcel', json_strip_nulls(json_build_object('weight_oz', i.weight_oz, 'length_in',"
    " i.length_in, 'width_in', i.width_in, 'height_in', i.height_in)),"
    " 'version', i.version, 'updated_at', i.updated_at)";

static const char rest_inv_list_sql[] =
    "SELECT coalesce(json_agg(%s ORDER BY i.sku), '[]')::text, count(*), max(i.sku)"
    " FROM (SELECT * FROM inventory_items x WHERE x.user_id = $1::uuid"
    "  AND ($2::text IS NULL OR (lower(x.sku) ~>=~ lower($2) AND"
    "  lower(x.sku) ~<~ (lower($2) || chr(1114111))))"
    "  AND (NOT $3::boolean OR x.on_hand - x.reserved <= x.low_stock)"
    "  AND ($4::text IS NULL OR x.sku > $4) ORDER BY x.sku LIMIT $5::integer) i";

/*
 * Set one SKU (created when missing): $3 on_hand, $4 name, $5 low_stock,
 * $6 If-Match, $7 parcel (the fields given replace the stored ones).
 */
static const char rest_inv_put_sql[] =
    "WITH cur AS (SELECT id, on_hand, reserved, version FROM inventory_items"
    "  WHERE user_id = $1::uuid AND sku = $2 FOR NO KEY UPDATE),"
    " chk AS (SELECT CASE WHEN $6::integer IS NOT NULL AND"
    "  coalesce((SELECT version FROM cur), 0) <> $6::integer THEN 'stale'"
    "  WHEN coalesce((SELECT reserved FROM cur), 0) > $3::integer THEN 'reserved'"
    "  ELSE 'ok' END AS v),"
    " up AS (INSERT INTO inventory_items AS i (user_id, sku, on_hand, product_name, low_stock,"
    "  weight_oz, length_in, width_in, height_in)"
    "  SELECT $1::uuid, $2, $3::integer, $4, coalesce($5::integer, 0),"
    "  ($7::jsonb ->> 'weight_oz')::numeric, ($7::jsonb ->> 'length_in')::numeric,"
    "  ($7::jsonb ->> 'width_in')::numeric, ($7::jsonb ->> 'height_in')::numeric"
    "  FROM chk WHERE v = 'ok'"
    "  ON CONFLICT (user_id, sku) DO UPDATE SET on_hand = EXCLUDED.on_hand,"
    "  product_name = coalesce($4, i.product_name), low_stock = coalesce($5::integer, i.low_stock),"
    "  weight_oz = coalesce(EXCLUDED.weight_oz, i.weight_oz),"
    "  length_in = coalesce(EXCLUDED.length_in, i.length_in),"
    "  width_in = coalesce(EXCLUDED.width_in, i.width_in),"
    "  height_in = coalesce(EXCLUDED.height_in, i.height_in),"
    "  version = i.version + 1 RETURNING i.*),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'inventory.set', 'inventory_item', $2,"
    "  (SELECT jsonb_build_object('on_hand', on_hand, 'version', version) FROM cur),"
    "  jsonb_build_object('on_hand', up.on_hand, 'version', up.version) FROM up RETURNING 1)"
    " SELECT (SELECT v FROM chk), (SELECT %s::text FROM up i),"
    "  (SELECT version FROM cur), (SELECT reserved FROM cur), (SELECT count(*) FROM au)";

/* Add $3 units (may be negative) to one SKU, with the reason $4. */
static const char rest_inv_adjust_sql[] =
    "WITH cur AS (SELECT id, on_hand, reserved, version FROM inventory_items"
    "  WHERE user_id = $1::uuid AND sku = $2 FOR NO KEY UPDATE),"
    " chk AS (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM cur) THEN 'not_found'"
    "  WHEN (SELECT on_hand FROM cur) + $3::integer < 0 THEN 'negative'"
    "  WHEN (SELECT on_hand FROM cur) + $3::integer < (SELECT reserved FROM cur) THEN 'reserved'"
    "  WHEN (SELECT on_hand FROM cur)::bigint + $3::integer > 100000000 THEN 'too_many'"
    "  ELSE 'ok' END AS v),"
    " up AS (UPDATE inventory_items i SET on_hand = i.on_hand + $3::integer,"
    "  version = i.version + 1 FROM cur, chk WHERE i.id = cur.id AND chk.v = 'ok' RETURNING i.*),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'inventory.adjusted', 'inventory_item', $2,"
    "  jsonb_build_object('on_hand', cur.on_hand),"
    "  jsonb_build_object('on_hand', up.on_hand, 'delta', $3::integer, 'reason', $4::text)"
    "  FROM up, cur RETURNING 1)"
    " SELECT (SELECT v FROM chk), (SELECT %s::text FROM up i),"
    "  (SELECT on_hand FROM cur), (SELECT reserved FROM cur), (SELECT count(*) FROM au)";

/*
 * Many SKUs in one transaction, locked in SKU order; a row that would go
 * below its reservations is refused (the others are stored).
 */
static const char rest_inv_import_sql[] =
    "WITH src AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(n integer, sku text,"
    "  on_hand integer, product_name text, low_stock integer)),"
    " lk AS (SELECT i.id, i.sku, i.reserved FROM inventory_items i JOIN src s ON s.sku = i.sku"
    "  WHERE i.user_id = $1::uuid ORDER BY i.sku FOR NO KEY UPDATE OF i),"
    " bad AS (SELECT s.n, s.sku, lk.reserved FROM src s JOIN lk ON lk.sku = s.sku"
    "  WHERE s.on_hand < lk.reserved),"
    " upd AS (UPDATE inventory_items i SET on_hand = s.on_hand,"
    "  product_name = coalesce(s.product_name, i.product_name),"
    "  low_stock = coalesce(s.low_stock, i.low_stock), version = i.version + 1"
    "  FROM src s WHERE i.user_id = $1::uuid AND i.sku = s.sku"
    "  AND NOT EXISTS (SELECT 1 FROM bad WHERE bad.sku = s.sku) RETURNING i.sku),"
    " ins AS (INSERT INTO inventory_items (user_id, sku, on_hand, product_name, low_stock)"
    "  SELECT $1::uuid, s.sku, s.on_hand, s.product_name, coalesce(s.low_stock, 0) FROM src s"
    "  WHERE NOT EXISTS (SELECT 1 FROM lk WHERE lk.sku = s.sku) ORDER BY s.sku"
    "  ON CONFLICT (user_id, sku) DO NOTHING RETURNING sku),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'inventory.imported', 'inventory', $1,"
    "  jsonb_build_object('updated', (SELECT count(*) FROM upd), 'created',"
    "  (SELECT count(*) FROM ins), 'refused', (SELECT count(*) FROM bad)) RETURNING 1)"
    " SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins),"
    "  (SELECT coalesce(json_agg(json_build_object('row', e.n, 'sku', e.sku, 'error', e.error)"
    "  ORDER BY e.n), '[]')::text FROM ("
    "  SELECT n, sku, reserved || ' units of it are reserved' AS error FROM bad"
    "  UNION ALL SELECT s.n, s.sku, 'stored meanwhile by another request; import it again'"
    "  FROM src s WHERE NOT EXISTS (SELECT 1 FROM lk WHERE lk.sku = s.sku)"
    "  AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.sku = s.sku)) e),"
    "  (SELECT count(*) FROM au)";

static const char rest_inv_settings_sql[] =
    "SELECT untracked_skus FROM creators WHERE id = $1::uuid";

static const char rest_inv_settings_put_sql[] =
    "WITH up AS (UPDATE creators SET untracked_skus = $2 WHERE id = $1::uuid"
    "  RETURNING untracked_skus),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'inventory.settings', 'creator', $1,"
    "  jsonb_build_object('untracked_skus', $2::text) FROM up RETURNING 1)"
    " SELECT (SELECT untracked_skus FROM up), (SELECT count(*) FROM au)";

/* One request of these endpoints. */
struct rest_inv_call {
	struct rest_call call;		/* first */
	char		sku[REST_INV_SKU_MAX * 4 + 1];
	char		search[REST_INV_SKU_MAX * 4 + 1];
	char		after[REST_INV_SKU_MAX * 4 + 1];	/* cursor: the last SKU seen */
	bool		low, has_after;
	long long	limit;
	long long	qty;		/* PUT: on hand; adjustments: delta */
	long long	low_stock;	/* -1: not given */
	char		name[REST_INV_NAME_MAX * 4 + 1];
	bool		has_name;
	char		reason[REST_REASON_SIZE];
	bool		has_reason;
	long long	if_match;
	char		*rows;		/* import: the valid rows as JSON */
	char		*parcel;	/* PUT: the parcel given, as JSON, or NULL */
	char		why[300];	/* PUT: why the parcel is refused */
	json_t		*errors;	/* import: the rows refused before the database */
};

static void
rest_inv_free(struct rest_call *rc)
{
	struct rest_inv_call *c = (struct rest_inv_call *)rc;

	free(c->rows);
	free(c->parcel);
	json_decref(c->errors);
	free(c);
}

static struct rest_inv_call *
rest_inv_new(void)
{
	struct rest_inv_call *c = xcalloc(1, sizeof(*c));

	c->call.free = rest_inv_free;
	c->low_stock = -1;
	c->limit = 100;
	return c;
}

/* A SKU: 1..100 characters of UTF-8 without control characters. */
static bool
rest_inv_sku_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= REST_INV_SKU_MAX * 4 && rest_text_ok(s, n) &&
	    rest_chars(s) <= REST_INV_SKU_MAX;
}

static bool
rest_inv_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n <= REST_INV_NAME_MAX * 4 && rest_text_ok(s, n) && rest_chars(s) <= REST_INV_NAME_MAX;
}

/* A whole JSON number in lo..hi into *out. */
static bool
rest_inv_int(json_t *v, long long lo, long long hi, long long *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return false;
	*out = json_integer_value(v);
	return true;
}

/* ---- GET /api/inventory ----------------------------------------------------------- */

static const char *
rest_inv_list_param(void *arg, const char *k, const char *v)
{
	struct rest_inv_call *c = arg;

	if (strcmp(k, "low_stock") == 0) {
		if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
			return "must be true or false";
		c->low = strcmp(v, "true") == 0;
	} else if (strcmp(k, "search") == 0) {
		if (!rest_inv_sku_ok(v))
			return "must be 1..100 characters of UTF-8";
		snprintf(c->search, sizeof(c->search), "%s", v);
	} else if (strcmp(k, "limit") == 0) {
		if ((c->limit = rest_number(v, 500)) < 0)
			return "must be an integer in 1..500";
	} else if (strcmp(k, "cursor") == 0) {
		if (!rest_inv_sku_ok(v))
			return "must be the next_cursor of a page";
		snprintf(c->after, sizeof(c->after), "%s", v);
		c->has_after = true;
	} else {
		return "is not a parameter of this endpoint";
	}
	return NULL;
}

static void
rest_inv_on_list(struct pg_batch *b, void *arg)
{
	struct rest_inv_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	struct evbuffer *out;
	char *next;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		rest_db_failed(&c->call, b, "the inventory cannot be read now");
		return;
	}
	out = evbuffer_new();
	evbuffer_add_printf(out, "{\"items\":%s,\"next_cursor\":", PQgetvalue(r, 0, 0));
	if (atoll(PQgetvalue(r, 0, 1)) == c->limit) {
		json_t *s = json_string(PQgetvalue(r, 0, 2));

		next = json_dumps(s, JSON_ENCODE_ANY);
		evbuffer_add_printf(out, "%s}", next);
		free(next);
		json_decref(s);
	} else {
		evbuffer_add_printf(out, "null}");
	}
	rest_reply(&c->call, 200, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
	evbuffer_free(out);
}

static void
rest_inv_list_run(struct rest_call *rc)
{
	struct rest_inv_call *c = (struct rest_inv_call *)rc;
	char limit[16];
	struct pg_batch *b = pg_batch_new(rest_inv_on_list, c);

	snprintf(limit, sizeof(limit), "%lld", c->limit);
	pg_batch_add(b, true, "rest_inv_list", 5, (const char *[]){ rc->creator,
	    c->search[0] ? c->search : NULL, c->low ? "true" : "false",
	    c->has_after ? c->after : NULL, limit });
	rest_submit(rc, b);
}

void
rest_inventory_list(struct httpd_req *hr)
{
	struct rest_inv_call *c = rest_inv_new();

	if (!rest_query(hr, rest_inv_list_param, c)) {
		rest_free(&c->call);
		return;
	}
	rest_begin(hr, &c->call, rest_inv_list_run);
}

/* ---- PUT /api/inventory/{sku}, POST /api/inventory/adjustments ------------------- */

/* The answer of a one-SKU change: the item, or why not. */
static void
rest_inv_on_change(struct pg_batch *b, void *arg)
{
	struct rest_inv_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *v;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("inventory change failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(&c->call, b, "the inventory cannot be changed now");
		return;
	}
	v = PQgetvalue(r, 0, 0);
	if (strcmp(v, "stale") == 0 && PQgetisnull(r, 0, 2))
		rest_error(&c->call, 412, "version_mismatch", "the SKU does not exist (If-Match: 0 "
		    "creates it)");
	else if (strcmp(v, "stale") == 0)
		rest_error(&c->call, 412, "version_mismatch", "the SKU is at version %s, not %lld; "
		    "read it again", PQgetvalue(r, 0, 2), c->if_match == REST_IF_NONE ? 0 :
		    c->if_match);
	else if (strcmp(v, "reserved") == 0)
		rest_error(&c->call, 409, "stock_reserved", "%s units of this SKU are reserved for "
		    "open orders: on hand cannot go below that", PQgetvalue(r, 0, 3));
	else if (strcmp(v, "not_found") == 0)
		rest_error(&c->call, 404, "not_found", "no such SKU");
	else if (strcmp(v, "negative") == 0)
		rest_error(&c->call, 409, "insufficient_stock", "the SKU has %s units on hand: it "
		    "cannot lose more than that", PQgetvalue(r, 0, 2));
	else if (strcmp(v, "too_many") == 0)
		rest_error(&c->call, 409, "too_many_units", "the SKU has %s units on hand: it "
		    "cannot hold more than 100000000", PQgetvalue(r, 0, 2));
	else {
		/* More on hand may serve runs waiting for stock. */
		wf_stock_changed(worker_self(), c->call.creator);
		rest_reply(&c->call, 200, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
	}
}

static const char *
rest_inv_put_fields(json_t *doc, struct rest_inv_call *c)
{
	const char *k;
	json_t *v;

	c->qty = -1;
	json_object_foreach(doc, k, v) {
		if (strcmp(k, "on_hand") == 0) {
			if (!rest_inv_int(v, 0, REST_INV_QTY_MAX, &c->qty))
				return "\"on_hand\" must be an integer in 0..100000000";
		} else if (strcmp(k, "product_name") == 0) {
			if (!json_is_string(v) || !rest_inv_name_ok(json_string_value(v)))
				return "\"product_name\" must be text of at most 255 characters";
			snprintf(c->name, sizeof(c->name), "%s", json_string_value(v));
			c->has_name = true;
		} else if (strcmp(k, "low_stock") == 0) {
			if (!rest_inv_int(v, 0, REST_INV_QTY_MAX, &c->low_stock))
				return "\"low_stock\" must be an integer in 0..100000000";
		} else if (strcmp(k, "parcel") == 0) {
			if (sp_parcel_invalid(v, c->why, sizeof(c->why)) != NULL)
				return c->why;
			free(c->parcel);
			c->parcel = json_dumps(v, JSON_COMPACT);
		} else {
			return rest_unknown_field(k);
		}
	}
	return c->qty < 0 ? "\"on_hand\" is required" : NULL;
}

static void
rest_inv_put_run(struct rest_call *rc)
{
	struct rest_inv_call *c = (struct rest_inv_call *)rc;
	json_t *doc;
	const char *bad;
	char qty[24], low[24], ver[24];
	struct pg_batch *b;

	if ((c->if_match = rest_if_match_new(rc)) == -1) {
		rest_error(rc, 400, "invalid_body", "If-Match must be the SKU's version, 0 for a new one");
		return;
	}
	if ((doc = rest_body(rc)) == NULL)
		return;
	bad = rest_inv_put_fields(doc, c);
	json_decref(doc);
	if (bad != NULL) {
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	snprintf(qty, sizeof(qty), "%lld", c->qty);
	snprintf(low, sizeof(low), "%lld", c->low_stock);
	snprintf(ver, sizeof(ver), "%lld", c->if_match == REST_IF_NONE ? 0 : c->if_match);
	b = pg_batch_new(rest_inv_on_change, c);
	pg_batch_add(b, true, "rest_inv_put", 7, (const char *[]){ rc->creator, c->sku, qty,
	    c->has_name ? c->name : NULL, c->low_stock >= 0 ? low : NULL,
	    c->if_match != 0 ? ver : NULL, c->parcel });
	rest_submit(rc, b);
}

void
rest_inventory_put(struct httpd_req *hr)
{
	struct rest_inv_call *c;
	char *sku;

	if (!rest_no_query(hr))
		return;
	sku = evhttp_uridecode(hr->params[0], 0, NULL);
	if (sku == NULL || !rest_inv_sku_ok(sku)) {
		httpd_error(hr, 400, "invalid_parameter", "the SKU must be 1..100 characters of UTF-8 "
		    "(percent-encoded in the path)");
		free(sku);
		return;
	}
	c = rest_inv_new();
	snprintf(c->sku, sizeof(c->sku), "%s", sku);
	free(sku);
	rest_begin(hr, &c->call, rest_inv_put_run);
}

static const char *
rest_inv_adjust_fields(json_t *doc, struct rest_inv_call *c)
{
	const char *k;
	json_t *v;

	json_object_foreach(doc, k, v) {
		if (strcmp(k, "sku") == 0) {
			if (!json_is_string(v) || !rest_inv_sku_ok(json_string_value(v)))
				return "\"sku\" must be 1..100 characters";
			snprintf(c->sku, sizeof(c->sku), "%s", json_string_value(v));
		} else if (strcmp(k, "delta") == 0) {
			if (!rest_inv_int(v, -REST_INV_QTY_MAX, REST_INV_QTY_MAX, &c->qty) || c->qty == 0)
				return "\"delta\" must be a non-zero integer in -100000000..100000000";
		} else if (strcmp(k, "reason") == 0) {
			if (json_is_null(v) || !rest_reason(v, c->reason, &c->has_reason))
				return "\"reason\" must be text of at most 255 characters";
		} else {
			return rest_unknown_field(k);
		}
	}
	if (c->sku[0] == '\0' || c->qty == 0)
		return "\"sku\" and \"delta\" are required";
	return c->has_reason ? NULL : "\"reason\" is required";
}

static void
rest_inv_adjust_run(struct rest_call *rc)
{
	struct rest_inv_call *c = (struct rest_inv_call *)rc;
	json_t *doc = rest_body(rc);
	const char *bad;
	char delta[24];
	struct pg_batch *b;

	if (doc == NULL)
		return;
	bad = rest_inv_adjust_fields(doc, c);
	json_decref(doc);
	if (bad != NULL) {
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	snprintf(delta, sizeof(delta), "%lld", c->qty);
	b = pg_batch_new(rest_inv_on_change, c);
	pg_batch_add(b, true, "rest_inv_adjust", 4, (const char *[]){ rc->creator, c->sku, delta,
	    c->reason });
	rest_submit(rc, b);
}

void
rest_inventory_adjust(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_inv_new()->call, rest_inv_adjust_run);
}

/* ---- POST /api/inventory/import ------------------------------------------------- */

/*
 * One row of an import into rows, or its error into errors; seen holds the
 * SKUs so far.  why: what the caller found wrong with the row already, or NULL.
 */
static void
rest_inv_import_row(int n, const char *why, const char *sku, const char *on_hand,
    const char *name, const char *low, json_t *rows, json_t *errors, json_t *seen)
{
	const char *bad = NULL;
	char *end;
	long long q = -1, ls = -1;

	if (why != NULL)
		bad = why;
	else if (sku == NULL || !rest_inv_sku_ok(sku))
		bad = "sku must be 1..100 characters of UTF-8";
	else if (on_hand == NULL || on_hand[0] == '\0' || (q = strtoll(on_hand, &end, 10)) < 0 ||
	    *end != '\0' || q > REST_INV_QTY_MAX)
		bad = "on_hand must be an integer in 0..100000000";
	else if (low != NULL && low[0] != '\0' && ((ls = strtoll(low, &end, 10)) < 0 ||
	    *end != '\0' || ls > REST_INV_QTY_MAX))
		bad = "low_stock must be an integer in 0..100000000";
	else if (name != NULL && !rest_inv_name_ok(name))
		bad = "product_name must be text of at most 255 characters";
	else if (json_object_get(seen, sku) != NULL)
		bad = "the same SKU is on an earlier row";
	if (bad != NULL) {
		json_array_append_new(errors, json_pack("{s:i,s:s?,s:s}", "row", n, "sku",
		    sku != NULL && rest_text_ok(sku, strlen(sku)) ? sku : NULL, "error", bad));
		return;
	}
	json_object_set_new(seen, sku, json_true());
	json_array_append_new(rows, json_pack("{s:i,s:s,s:I,s:s?,s:o}", "n", n, "sku", sku,
	    "on_hand", (json_int_t)q, "product_name", name != NULL && name[0] ? name : NULL,
	    "low_stock", ls >= 0 ? json_integer(ls) : json_null()));
}

/* What is wrong with the fields of one JSON row (an object?), or NULL. */
static const char *
rest_inv_import_fields(json_t *it)
{
	static const char *const known[] = { "sku", "on_hand", "product_name", "low_stock", NULL };
	const char *k;
	json_t *v;

	if (!json_is_object(it))
		return "a row must be an object";
	json_object_foreach(it, k, v)
		if (rest_index(known, k) < 0)
			return "a row has only the fields sku, on_hand, product_name and low_stock";
	return NULL;
}

/* {"items":[{"sku","on_hand","product_name","low_stock"}...]}: NULL or the 400 message. */
static const char *
rest_inv_import_json(json_t *doc, json_t *rows, json_t *errors, json_t *seen)
{
	json_t *items = json_object_get(doc, "items"), *it;
	size_t i;

	if (json_object_size(doc) != 1 || !json_is_array(items))
		return "the body must be {\"items\": [...]}";
	if (json_array_size(items) == 0 || json_array_size(items) > REST_INVENTORY_IMPORT_MAX)
		return "\"items\" must hold 1..10000 rows";
	json_array_foreach(items, i, it) {
		char q[32] = "", l[32] = "";
		json_t *qv = json_object_get(it, "on_hand"), *lv = json_object_get(it, "low_stock");
		json_t *nv = json_object_get(it, "product_name");
		const char *why = rest_inv_import_fields(it);

		if (why == NULL && nv != NULL && !json_is_null(nv) && !json_is_string(nv))
			why = "product_name must be text of at most 255 characters";
		if (why != NULL) {
			rest_inv_import_row((int)i + 1, why, json_string_value(json_object_get(it,
			    "sku")), NULL, NULL, NULL, rows, errors, seen);
			continue;
		}
		if (json_is_integer(qv))
			snprintf(q, sizeof(q), "%lld", (long long)json_integer_value(qv));
		else
			snprintf(q, sizeof(q), "%s", qv == NULL ? "" : "x");
		if (json_is_integer(lv))
			snprintf(l, sizeof(l), "%lld", (long long)json_integer_value(lv));
		else if (lv != NULL && !json_is_null(lv))
			snprintf(l, sizeof(l), "x");
		rest_inv_import_row((int)i + 1, NULL, json_string_value(json_object_get(it, "sku")), q,
		    json_string_value(nv), l, rows, errors, seen);
	}
	return NULL;
}

/* The next CSV field of *p (RFC 4180 quoting) into out; false at the end of the line. */
static bool
rest_inv_csv_field(const char **p, struct evbuffer *out, bool *bad)
{
	const char *s = *p;

	if (*s == '\0' || *s == '\n')
		return false;
	if (*s == '"') {
		for (s++; *s != '\0'; s++) {
			if (*s == '"' && s[1] == '"')
				evbuffer_add(out, s++, 1);
			else if (*s == '"')
				break;
			else
				evbuffer_add(out, s, 1);
		}
		if (*s != '"')
			*bad = true;
		else
			s++;
	} else {
		for (; *s != '\0' && *s != ',' && *s != '\n' && *s != '\r'; s++)
			evbuffer_add(out, s, 1);
	}
	if (*s == '\r')
		s++;
	if (*s == ',')
		s++;
	else if (*s != '\n' && *s != '\0')
		*bad = true;
	evbuffer_add(out, "", 1);
	*p = s;
	return true;
}

/* The fields of one CSV line (up to 8), copied into f; the count, or -1 when malformed. */
static int
rest_inv_csv_line(const char **p, char f[8][1024])
{
	struct evbuffer *b = evbuffer_new();
	bool bad = false;
	int n = 0;

	while (rest_inv_csv_field(p, b, &bad)) {
		size_t len = evbuffer_get_length(b);

		if (n == 8 || len > 1024)
			bad = true;
		else
			evbuffer_remove(b, f[n++], len);
		evbuffer_drain(b, evbuffer_get_length(b));
		if (**p == '\n')
			break;
	}
	if (**p == '\n')
		(*p)++;
	evbuffer_free(b);
	return bad ? -1 : n;
}

/* sku,on_hand[,product_name][,low_stock] with a header line: NULL or the 400 message. */
static const char *
rest_inv_import_csv(const char *text, json_t *rows, json_t *errors, json_t *seen)
{
	static const char *const cols[] = { "sku", "on_hand", "product_name", "low_stock", NULL };
	char f[8][1024];
	int col[4] = { -1, -1, -1, -1 }, n = rest_inv_csv_line(&text, f), line = 0;

	for (int i = 0; i < n; i++) {
		int k = rest_index(cols, f[i]);

		if (k < 0 || col[k] >= 0)
			return "the first line must name the columns: sku, on_hand, and optionally "
			    "product_name and low_stock, each once";
		col[k] = i;
	}
	if (n < 0 || col[0] < 0 || col[1] < 0)
		return "the first line must name the columns sku and on_hand";
	while (*text != '\0') {
		int m = rest_inv_csv_line(&text, f);

		if (m == 0)
			continue;
		if (++line > REST_INVENTORY_IMPORT_MAX)
			return "an import holds 10000 rows at most";
		if (m < 0 || m <= col[0] || m <= col[1]) {
			rest_inv_import_row(line, m < 0 ? "the line is not well-formed CSV (quotes, "
			    "at most 8 fields of 1024 bytes)" : "the line lacks the sku or on_hand "
			    "column", NULL, NULL, NULL, NULL, rows, errors, seen);
			continue;
		}
		rest_inv_import_row(line, NULL, f[col[0]], f[col[1]], col[2] >= 0 && col[2] < m ?
		    f[col[2]] : NULL, col[3] >= 0 && col[3] < m ? f[col[3]] : NULL, rows, errors, seen);
	}
	return line == 0 ? "the import has no rows" : NULL;
}

/* Well-formed UTF-8 whose only control characters are line ends and tabs. */
static bool
rest_inv_csv_ok(const char *text)
{
	char *copy = xstrdup(text);
	bool ok;

	for (char *p = copy; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	ok = rest_text_ok(copy, strlen(copy));
	free(copy);
	return ok;
}

static void
rest_inv_on_import(struct pg_batch *b, void *arg)
{
	struct rest_inv_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	json_t *refused, *e, *doc;
	size_t i;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("inventory import failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(&c->call, b, "the inventory cannot be imported now");
		return;
	}
	refused = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
	json_array_foreach(refused, i, e)
		json_array_append(c->errors, e);
	json_decref(refused);
	wf_stock_changed(worker_self(), c->call.creator);
	doc = json_pack("{s:b,s:I,s:I,s:O}", "success", 1, "imported",
	    (json_int_t)atoll(PQgetvalue(r, 0, 0)), "failed", (json_int_t)json_array_size(c->errors),
	    "errors", c->errors);
	{
		char *text = json_dumps(doc, JSON_COMPACT);

		rest_reply(&c->call, 200, text, strlen(text));
		free(text);
	}
	json_decref(doc);
}

static void
rest_inv_import_run(struct rest_call *rc)
{
	struct rest_inv_call *c = (struct rest_inv_call *)rc;
	struct evbuffer *in = evhttp_request_get_input_buffer(rc->hr->req);
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(rc->hr->req),
	    "Content-Type"), *bad;
	json_t *rows = json_array(), *seen = json_object();
	struct pg_batch *b;

	c->errors = json_array();
	if (ct != NULL && strncasecmp(ct, "text/csv", 8) == 0) {
		size_t len = evbuffer_get_length(in);
		char *text = xmalloc(len + 1);

		evbuffer_copyout(in, text, len);
		text[len] = '\0';
		bad = strlen(text) != len || !rest_inv_csv_ok(text) ? "the CSV must be UTF-8 text" :
		    rest_inv_import_csv(text, rows, c->errors, seen);
		free(text);
	} else {
		json_t *doc = rest_body(rc);

		if (doc == NULL) {
			json_decref(rows);
			json_decref(seen);
			return;
		}
		bad = rest_inv_import_json(doc, rows, c->errors, seen);
		json_decref(doc);
	}
	json_decref(seen);
	if (bad != NULL) {
		json_decref(rows);
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	c->rows = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	b = pg_batch_new(rest_inv_on_import, c);
	pg_batch_add(b, true, "rest_inv_import", 2, (const char *[]){ rc->creator, c->rows });
	rest_submit(rc, b);
}

void
rest_inventory_import(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_inv_new()->call, rest_inv_import_run);
}

/* ---- GET/PUT /api/inventory/settings ---------------------------------------------- */

static void
rest_inv_on_settings(struct pg_batch *b, void *arg)
{
	struct rest_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	char body[96];

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
		rest_db_failed(c, b, "the settings cannot be read now");
		return;
	}
	snprintf(body, sizeof(body), "{\"untracked_skus\":\"%s\"}", PQgetvalue(r, 0, 0));
	rest_reply(c, 200, body, strlen(body));
}

static void
rest_inv_settings_run(struct rest_call *rc)
{
	struct pg_batch *b = pg_batch_new(rest_inv_on_settings, rc);

	pg_batch_add(b, true, "rest_inv_settings", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

void
rest_inventory_settings(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_inv_new()->call, rest_inv_settings_run);
}

static void
rest_inv_settings_put_run(struct rest_call *rc)
{
	json_t *doc = rest_body(rc), *v;
	const char *val;
	struct pg_batch *b;

	if (doc == NULL)
		return;
	v = json_object_get(doc, "untracked_skus");
	val = json_string_value(v);
	if (json_object_size(doc) != 1 || val == NULL || (strcmp(val, "not_tracked") != 0 &&
	    strcmp(val, "needs_attention") != 0)) {
		json_decref(doc);
		rest_error(rc, 400, "invalid_body", "the body must be {\"untracked_skus\": "
		    "\"not_tracked\" or \"needs_attention\"}");
		return;
	}
	b = pg_batch_new(rest_inv_on_settings, rc);
	pg_batch_add(b, true, "rest_inv_settings_put", 2, (const char *[]){ rc->creator, val });
	json_decref(doc);
	rest_submit(rc, b);
}

void
rest_inventory_settings_put(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_inv_new()->call, rest_inv_settings_put_run);
}

/* Prepare tmpl with its one "%s" replaced by the item's JSON expression. */
static void
rest_inv_prepare_item(struct pg_pool *pg, const char *name, const char *tmpl)
{
	const char *at = strstr(tmpl, "%s");
	char sql[8192];

	snprintf(sql, sizeof(sql), "%.*s%s%s", (int)(at - tmpl), tmpl, rest_inv_item_json, at + 2);
	pg_pool_prepare(pg, name, sql);
}

void
rest_inventory_prepare(struct pg_pool *pg)
{
	rest_inv_prepare_item(pg, "rest_inv_list", rest_inv_list_sql);
	rest_inv_prepare_item(pg, "rest_inv_put", rest_inv_put_sql);
	rest_inv_prepare_item(pg, "rest_inv_adjust", rest_inv_adjust_sql);
	pg_pool_prepare(pg, "rest_inv_import", rest_inv_import_sql);
	pg_pool_prepare(pg, "rest_inv_settings", rest_inv_settings_sql);
	pg_pool_prepare(pg, "rest_inv_settings_put", rest_inv_settings_put_sql);
}
