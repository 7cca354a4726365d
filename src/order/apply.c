/*
 * apply: validate and fold TikTok order snapshots; the one-statement upsert.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/apply.h"
#include "orderflow/pg.h"
#include "orderflow/util.h"

/*
 * The status table.  Webhooks say CANCEL where the order API says
 * CANCELLED; PARTIALLY_SHIPPING appears only in the API.  Both spellings
 * are here, so a status read from either source maps the same way.
 */
static const struct {
	const char	*tiktok;
	const char	*status;	/* enum order_status */
} apply_statuses[] = {
	{ "UNPAID", "pending" },
	{ "ON_HOLD", "pending" },
	{ "AWAITING_SHIPMENT", "confirmed" },
	{ "PARTIALLY_SHIPPING", "processing" },
	{ "AWAITING_COLLECTION", "processing" },
	{ "IN_TRANSIT", "shipped" },
	{ "DELIVERED", "delivered" },
	{ "COMPLETED", "delivered" },
	{ "CANCELLED", "cancelled" },
	{ "CANCEL", "cancelled" },
};

/* Amounts beyond NUMERIC(12,2): 10 integer digits. */
#define APPLY_MONEY_MAX 9999999999LL
/* Timestamps beyond year 9999 are garbage. */
#define APPLY_TIME_MAX 253402300799LL

const char *
apply_map_status(const char *tiktok_status)
{
	for (size_t i = 0; i < NELEM(apply_statuses); i++)
		if (strcmp(apply_statuses[i].tiktok, tiktok_status) == 0)
			return apply_statuses[i].status;
	return NULL;
}

/* An id: 1..64 bytes of [0-9A-Za-z_-]. */
static const char *
apply_id(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0 || len > 64 || strspn(s, "0123456789abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") != len)
		return NULL;
	return s;
}

/* Unix seconds; absent, null or 0 give json null, anything else bad gives NULL. */
static json_t *
apply_time(json_t *obj, const char *key, bool required)
{
	json_t *v = json_object_get(obj, key);
	json_int_t t;

	if (v == NULL || json_is_null(v) || (json_is_integer(v) && json_integer_value(v) == 0))
		return required ? NULL : json_null();
	if (!json_is_integer(v) || (t = json_integer_value(v)) < 0 || t > APPLY_TIME_MAX)
		return NULL;
	return json_integer(t);
}

/* A decimal string with at most 2 decimals, in cents; -1 when absent or "". */
static bool
apply_money(json_t *obj, const char *key, long long *cents)
{
	json_t *v = json_object_get(obj, key);
	const char *s = json_string_value(v), *dot;
	long long units = 0, frac = 0;
	size_t intlen, fraclen = 0;

	*cents = -1;
	if (v == NULL || json_is_null(v) || (s != NULL && s[0] == '\0'))
		return true;
	if (s == NULL)
		return false;
	dot = strchr(s, '.');
	intlen = dot != NULL ? (size_t)(dot - s) : strlen(s);
	if (dot != NULL)
		fraclen = strlen(dot + 1);
	if (intlen == 0 || intlen > 10 || strspn(s, "0123456789") != intlen ||
	    (dot != NULL && (fraclen == 0 || fraclen > 2 || strspn(dot + 1, "0123456789") != fraclen)))
		return false;
	for (size_t i = 0; i < intlen; i++)
		units = units * 10 + (s[i] - '0');
	for (size_t i = 0; i < 2; i++)
		frac = frac * 10 + (i < fraclen ? dot[1 + i] - '0' : 0);
	*cents = units * 100 + frac;
	return units <= APPLY_MONEY_MAX;
}

static json_t *
apply_cents(long long cents)
{
	char buf[32];

	if (cents < 0)
		return json_null();
	snprintf(buf, sizeof(buf), "%lld.%02lld", cents / 100, cents % 100);
	return json_string(buf);
}

/* A string cut to at most max bytes on a UTF-8 boundary; "" when absent. */
static json_t *
apply_text(json_t *obj, const char *key, size_t max)
{
	const char *s = json_string_value(json_object_get(obj, key));
	size_t len = s != NULL ? strlen(s) : 0;

	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	return json_stringn(s != NULL ? s : "", len);
}

/* Like apply_text, but null when absent, empty or longer than max (no cut). */
static json_t *
apply_opt_text(json_t *obj, const char *key, size_t max)
{
	const char *s = json_string_value(json_object_get(obj, key));

	if (s == NULL || s[0] == '\0' || strlen(s) > max)
		return json_null();
	return json_string(s);
}

/* The recipient address, only the fields we know, every one bounded. */
static json_t *
apply_address(json_t *addr)
{
	static const char *const keys[] = { "name", "phone_number", "full_address", "postal_code",
	    "region_code", "address_line1", "address_line2", "address_line3", "address_line4" };
	json_t *out = json_object(), *district = json_array(), *d;
	size_t i;

	for (i = 0; i < NELEM(keys); i++)
		if (json_is_string(json_object_get(addr, keys[i])))
			json_object_set_new(out, keys[i], apply_text(addr, keys[i], 512));
	json_array_foreach(json_object_get(addr, "district_info"), i, d) {
		if (i >= 10)
			break;
		json_array_append_new(district, json_pack("{s:o,s:o}",
		    "level", apply_text(d, "address_level_name", 64),
		    "name", apply_text(d, "address_name", 255)));
	}
	json_object_set_new(out, "district_info", district);
	return out;
}

/* Fold one unit line into items (one entry per sku_id). */
static const char *
apply_fold_line(json_t *items, json_t *line, long long *total)
{
	const char *sku = apply_id(line, "sku_id"), *lid = apply_id(line, "id");
	const char *pid = apply_id(line, "product_id");
	json_t *item = NULL, *it;
	long long price;
	size_t i;

	if (sku == NULL || lid == NULL || pid == NULL)
		return "a line item lacks a valid id, sku_id or product_id";
	if (!apply_money(line, "sale_price", &price) || price < 0)
		return "a line item has no valid sale_price";
	json_array_foreach(items, i, it)
		if (strcmp(json_string_value(json_object_get(it, "sku_id")), sku) == 0)
			item = it;
	if (item == NULL) {
		json_t *seller = apply_opt_text(line, "seller_sku", 100);

		item = json_pack("{s:s,s:s,s:o,s:o,s:o,s:O,s:i,s:I,s:[]}", "sku_id", sku,
		    "product_id", pid, "product_name", apply_text(line, "product_name", 255),
		    "variant_name", apply_opt_text(line, "sku_name", 255),
		    "product_sku", json_is_null(seller) ? json_string(sku) : json_incref(seller),
		    "seller_sku", seller, "quantity", 0, "cents", (json_int_t)0, "line_ids");
		json_decref(seller);
		json_array_append_new(items, item);
	}
	json_object_set_new(item, "quantity",
	    json_integer(json_integer_value(json_object_get(item, "quantity")) + 1));
	json_object_set_new(item, "cents",
	    json_integer(json_integer_value(json_object_get(item, "cents")) + price));
	json_array_append_new(json_object_get(item, "line_ids"), json_string(lid));
	*total += price;
	return NULL;
}

/* Unit lines to one item per SKU with quantity, unit and total price. */
static json_t *
apply_items(json_t *lines, char *err, size_t errsz)
{
	json_t *items = json_array(), *line, *it;
	long long total = 0;
	const char *bad;
	size_t i;

	if (!json_is_array(lines) || json_array_size(lines) == 0 ||
	    json_array_size(lines) > APPLY_MAX_LINES) {
		snprintf(err, errsz, "line_items must be an array of 1..%d lines", APPLY_MAX_LINES);
		json_decref(items);
		return NULL;
	}
	json_array_foreach(lines, i, line) {
		if ((bad = apply_fold_line(items, line, &total)) != NULL) {
			snprintf(err, errsz, "%s", bad);
			json_decref(items);
			return NULL;
		}
	}
	json_array_foreach(items, i, it) {
		json_int_t q = json_integer_value(json_object_get(it, "quantity"));
		json_int_t c = json_integer_value(json_object_get(it, "cents"));

		json_object_set_new(it, "unit_price", apply_cents(c / q));
		json_object_set_new(it, "total_price", apply_cents(c));
		json_object_del(it, "cents");
	}
	return items;
}

/* The money fields of the payment object into rec. */
static const char *
apply_payment(json_t *rec, json_t *pay)
{
	static const struct { const char *from, *to; } amounts[] = {
		{ "sub_total", "subtotal" }, { "tax", "tax" }, { "shipping_fee", "shipping_cost" },
		{ "total_amount", "total_amount" },
	};
	const char *cur = json_string_value(json_object_get(pay, "currency"));
	long long cents;

	if (!json_is_object(pay))
		return "payment is missing";
	if (cur == NULL || strlen(cur) != 3 || strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
		return "payment.currency is not a 3-letter code";
	json_object_set_new(rec, "currency", json_string(cur));
	for (size_t i = 0; i < NELEM(amounts); i++) {
		if (!apply_money(pay, amounts[i].from, &cents))
			return "a payment amount is not a decimal string";
		json_object_set_new(rec, amounts[i].to, apply_cents(cents));
	}
	if (json_is_null(json_object_get(rec, "total_amount")))
		return "payment.total_amount is missing";
	return NULL;
}

/* The time fields into rec; create_time and update_time are required. */
static const char *
apply_times(json_t *rec, json_t *order)
{
	static const char *const keys[] = { "create_time", "update_time", "paid_time",
	    "rts_sla_time", "shipping_due_time", "collection_due_time", "delivery_sla_time",
	    "cancel_order_sla_time" };

	for (size_t i = 0; i < NELEM(keys); i++) {
		json_t *t = apply_time(order, keys[i], i < 2);

		if (t == NULL)
			return i < 2 ? "create_time or update_time is missing or invalid" :
			    "an SLA or paid time is not a Unix time";
		json_object_set_new(rec, keys[i], t);
	}
	return NULL;
}

json_t *
apply_normalize(json_t *order, const char **idp, char *err, size_t errsz)
{
	const char *id = apply_id(order, "id"), *ts = json_string_value(json_object_get(order, "status"));
	const char *status = ts != NULL ? apply_map_status(ts) : NULL, *bad;
	json_t *addr = json_object_get(order, "recipient_address"), *rec, *items;

	*idp = id;
	if (!json_is_object(order) || id == NULL) {
		snprintf(err, errsz, "order has no valid id");
		return NULL;
	}
	if (status == NULL) {
		snprintf(err, errsz, "unknown TikTok order status \"%.40s\"", ts != NULL ? ts : "");
		return NULL;
	}
	if ((items = apply_items(json_object_get(order, "line_items"), err, errsz)) == NULL)
		return NULL;
	rec = json_pack("{s:s,s:s,s:s,s:b,s:b,s:o,s:o,s:o,s:o,s:o,s:o}", "tiktok_order_id", id,
	    "order_status", status, "tiktok_status", ts,
	    "is_on_hold", json_is_true(json_object_get(order, "is_on_hold_order")),
	    "buyer_request_cancel", json_is_true(json_object_get(order, "is_buyer_request_cancel")),
	    "customer_name", apply_text(addr, "name", 255),
	    "customer_email", apply_opt_text(order, "buyer_email", 255),
	    "customer_phone", apply_opt_text(addr, "phone_number", 50),
	    "shipping_address", apply_address(addr),
	    "shipping_method", apply_opt_text(order, "delivery_option_name", 100),
	    "items", items);
	if ((bad = apply_times(rec, order)) != NULL ||
	    (bad = apply_payment(rec, json_object_get(order, "payment"))) != NULL) {
		snprintf(err, errsz, "%s", bad);
		json_decref(rec);
		return NULL;
	}
	json_object_set_new(rec, "payment_status", json_string(
	    json_integer_value(json_object_get(rec, "paid_time")) > 0 ? "paid" : "pending"));
	return rec;
}

/*
 * One statement, so one transaction and one round trip per set.  prev
 * locks the stored rows first so the history and audit rows see the
 * state they replace; the upsert's WHERE is the never-move-backwards rule.
 */
static const char apply_sql[] =
    "WITH shop AS (SELECT id, creator_id FROM shops WHERE id = $1::uuid),"
    " src AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS x("
    "  tiktok_order_id text, order_status order_status, tiktok_status text,"
    "  update_time bigint, create_time bigint, paid_time bigint, rts_sla_time bigint,"
    "  shipping_due_time bigint, collection_due_time bigint, delivery_sla_time bigint,"
    "  cancel_order_sla_time bigint, is_on_hold boolean, buyer_request_cancel boolean,"
    "  currency text, subtotal numeric, tax numeric, shipping_cost numeric,"
    "  total_amount numeric, payment_status payment_status, customer_name text,"
    "  customer_email text, customer_phone text, shipping_address jsonb,"
    "  shipping_method text, items jsonb)),"
    " prev AS (SELECT o.id, o.tiktok_order_id, o.order_status, o.tiktok_status,"
    "  o.tiktok_update_time FROM orders o JOIN src USING (tiktok_order_id) FOR UPDATE OF o),"
    " up AS (INSERT INTO orders AS o (user_id, shop_id, tiktok_order_id, order_number,"
    "  order_status, tiktok_status, tiktok_update_time, subtotal, tax, total_amount, currency,"
    "  payment_status, customer_name, customer_email, customer_phone, shipping_address,"
    "  shipping_method, shipping_cost, order_date, shipped_date, delivered_date, rts_sla_time,"
    "  shipping_due_time, collection_due_time, delivery_sla_time, cancel_order_sla_time,"
    "  is_on_hold, buyer_request_cancel, last_tiktok_sync, sync_status)"
    "  SELECT shop.creator_id, shop.id, s.tiktok_order_id, s.tiktok_order_id, s.order_status,"
    "  s.tiktok_status, to_timestamp(s.update_time), s.subtotal, s.tax, s.total_amount,"
    "  s.currency, s.payment_status, s.customer_name, s.customer_email, s.customer_phone,"
    "  s.shipping_address, s.shipping_method, s.shipping_cost, to_timestamp(s.create_time),"
    "  CASE WHEN s.order_status IN ('shipped', 'delivered') THEN to_timestamp(s.update_time) END,"
    "  CASE WHEN s.order_status = 'delivered' THEN to_timestamp(s.update_time) END,"
    "  to_timestamp(s.rts_sla_time), to_timestamp(s.shipping_due_time),"
    "  to_timestamp(s.collection_due_time), to_timestamp(s.delivery_sla_time),"
    "  to_timestamp(s.cancel_order_sla_time), s.is_on_hold, s.buyer_request_cancel, now(),"
    "  'synced' FROM src s CROSS JOIN shop"
    "  ON CONFLICT (tiktok_order_id) DO UPDATE SET order_status = EXCLUDED.order_status,"
    "  tiktok_status = EXCLUDED.tiktok_status, tiktok_update_time = EXCLUDED.tiktok_update_time,"
    "  subtotal = EXCLUDED.subtotal, tax = EXCLUDED.tax, total_amount = EXCLUDED.total_amount,"
    "  currency = EXCLUDED.currency, payment_status = EXCLUDED.payment_status,"
    "  customer_name = EXCLUDED.customer_name, customer_email = EXCLUDED.customer_email,"
    "  customer_phone = EXCLUDED.customer_phone, shipping_address = EXCLUDED.shipping_address,"
    "  shipping_method = EXCLUDED.shipping_method, shipping_cost = EXCLUDED.shipping_cost,"
    "  shipped_date = coalesce(o.shipped_date, EXCLUDED.shipped_date),"
    "  delivered_date = coalesce(o.delivered_date, EXCLUDED.delivered_date),"
    "  rts_sla_time = EXCLUDED.rts_sla_time, shipping_due_time = EXCLUDED.shipping_due_time,"
    "  collection_due_time = EXCLUDED.collection_due_time,"
    "  delivery_sla_time = EXCLUDED.delivery_sla_time,"
    "  cancel_order_sla_time = EXCLUDED.cancel_order_sla_time, is_on_hold = EXCLUDED.is_on_hold,"
    "  buyer_request_cancel = EXCLUDED.buyer_request_cancel, last_tiktok_sync = now(),"
    "  sync_status = 'synced', version = o.version + 1"
    "  WHERE o.tiktok_update_time IS NULL OR o.tiktok_update_time < EXCLUDED.tiktok_update_time"
    "  RETURNING o.id, o.user_id, o.tiktok_order_id, o.order_status, o.tiktok_status),"
    " it AS (INSERT INTO order_items AS i (order_id, user_id, tiktok_product_id, sku_id,"
    "  seller_sku, product_name, product_sku, variant_name, quantity, unit_price, total_price,"
    "  tiktok_line_item_ids)"
    "  SELECT up.id, up.user_id, li.product_id, li.sku_id, li.seller_sku, li.product_name,"
    "  li.product_sku, li.variant_name, li.quantity, li.unit_price, li.total_price, li.line_ids"
    "  FROM up JOIN src s USING (tiktok_order_id) CROSS JOIN LATERAL jsonb_to_recordset(s.items)"
    "  AS li(product_id text, sku_id text, seller_sku text, product_name text, product_sku text,"
    "  variant_name text, quantity integer, unit_price numeric, total_price numeric,"
    "  line_ids text[])"
    "  ON CONFLICT (order_id, sku_id) DO UPDATE SET tiktok_product_id = EXCLUDED.tiktok_product_id,"
    "  seller_sku = EXCLUDED.seller_sku, product_name = EXCLUDED.product_name,"
    "  product_sku = EXCLUDED.product_sku, variant_name = EXCLUDED.variant_name,"
    "  quantity = greatest(EXCLUDED.quantity, i.shipped_quantity),"
    "  unit_price = EXCLUDED.unit_price, total_price = EXCLUDED.total_price,"
    "  tiktok_line_item_ids = EXCLUDED.tiktok_line_item_ids RETURNING 1),"
    " hi AS (INSERT INTO order_status_history (order_id, user_id, previous_status, new_status,"
    "  status_reason, change_source, metadata)"
    "  SELECT up.id, up.user_id, p.order_status, up.order_status,"
    "  'TikTok status ' || up.tiktok_status, 'tiktok_shop',"
    "  jsonb_build_object('tiktok_status', up.tiktok_status, 'previous_tiktok_status',"
    "  p.tiktok_status) FROM up LEFT JOIN prev p USING (tiktok_order_id)"
    "  WHERE p.order_status IS DISTINCT FROM up.order_status RETURNING 1),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT shop.creator_id, 'tiktok_shop', CASE WHEN up.id IS NULL THEN 'order.stale_snapshot'"
    "  WHEN p.id IS NULL THEN 'order.created' ELSE 'order.updated' END, 'order',"
    "  coalesce(up.id, p.id)::text,"
    "  CASE WHEN p.id IS NOT NULL THEN jsonb_build_object('order_status', p.order_status,"
    "  'tiktok_status', p.tiktok_status, 'tiktok_update_time', p.tiktok_update_time) END,"
    "  jsonb_build_object('order_status', s.order_status, 'tiktok_status', s.tiktok_status,"
    "  'tiktok_update_time', to_timestamp(s.update_time))"
    "  FROM src s CROSS JOIN shop LEFT JOIN up USING (tiktok_order_id)"
    "  LEFT JOIN prev p USING (tiktok_order_id)"
    "  WHERE up.id IS NOT NULL OR p.tiktok_update_time > to_timestamp(s.update_time) RETURNING 1),"
    " ev AS (UPDATE webhook_events SET processed_at = now(), lease_owner = NULL,"
    "  lease_until = NULL, last_error = NULL, attempts = attempts + 1"
    "  WHERE id = ANY ($3::bigint[]) RETURNING 1)"
    " SELECT count(up.id), count(*) FILTER (WHERE up.id IS NULL AND"
    "  p.tiktok_update_time > to_timestamp(s.update_time)),"
    "  count(*) FILTER (WHERE up.id IS NULL AND"
    "  p.tiktok_update_time <= to_timestamp(s.update_time)),"
    "  (SELECT count(*) FROM ev), (SELECT count(*) FROM it), (SELECT count(*) FROM hi),"
    "  (SELECT count(*) FROM au),"
    "  (SELECT string_agg(u.user_id || ' ' || u.id || ' ' || u.tiktok_order_id, E'\\n') FROM up u)"
    " FROM src s LEFT JOIN up USING (tiktok_order_id) LEFT JOIN prev p USING (tiktok_order_id)";

void
apply_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "apply_orders", apply_sql);
}

struct apply_call {
	apply_cb	*cb;
	void		*arg;
};

static void
apply_on_done(struct pg_batch *b, void *arg)
{
	struct apply_call *c = arg;
	struct apply_result r = { 0, 0, 0, NULL };
	PGresult *res = pg_batch_result(b, 0);
	const char *error = pg_batch_error(b);

	if (error == NULL && (res == NULL || PQntuples(res) != 1 || PQnfields(res) < 3))
		error = "unexpected result of the apply statement";
	if (error == NULL) {
		r.applied = atoi(PQgetvalue(res, 0, 0));
		r.stale = atoi(PQgetvalue(res, 0, 1));
		r.unchanged = atoi(PQgetvalue(res, 0, 2));
		if (PQnfields(res) >= 8 && !PQgetisnull(res, 0, 7))
			r.changed = PQgetvalue(res, 0, 7);
	}
	c->cb(error, &r, c->arg);
	free(c);
}

bool
apply_submit(struct pg_pool *pg, const char *shop_id, json_t *records, const char *event_ids,
    apply_cb *cb, void *arg)
{
	struct apply_call *c = xmalloc(sizeof(*c));
	char *json = json_dumps(records, JSON_COMPACT);
	const char *params[3] = { shop_id, json, event_ids };
	struct pg_batch *b = pg_batch_new(apply_on_done, c);

	c->cb = cb;
	c->arg = arg;
	pg_batch_add(b, true, "apply_orders", 3, params);
	free(json);
	if (pg_submit(pg, b) != PG_OK) {
		free(c);
		return false;
	}
	return true;
}
