/*
 * apply: validate and fold TikTok order snapshots; the one-statement upsert.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/apply.h"
#include "orderflow/order.h"
#include "orderflow/pg.h"
#include "orderflow/util.h"

/* Amounts beyond NUMERIC(12,2): 10 integer digits. */
#define APPLY_MONEY_MAX 9999999999LL
/* Timestamps beyond year 9999 are garbage. */
#define APPLY_TIME_MAX 253402300799LL

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
	const char *ds = json_string_value(json_object_get(line, "display_status"));
	bool cancelled;
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

		item = json_pack("{s:s,s:s,s:o,s:o,s:o,s:O,s:i,s:i,s:I,s:[],s:[]}", "sku_id", sku,
		    "product_id", pid, "product_name", apply_text(line, "product_name", 255),
		    "variant_name", apply_opt_text(line, "sku_name", 255),
		    "product_sku", json_is_null(seller) ? json_string(sku) : json_incref(seller),
		    "seller_sku", seller, "quantity", 0, "cancelled", 0, "cents", (json_int_t)0,
		    "line_ids", "cancelled_ids");
		json_decref(seller);
		json_array_append_new(items, item);
	}
	/* A line TikTok cancelled (a partial cancellation) is not to be shipped. */
	cancelled = ds != NULL && strcmp(ds, "CANCELLED") == 0;
	json_object_set_new(item, cancelled ? "cancelled" : "quantity",
	    json_integer(json_integer_value(json_object_get(item, cancelled ? "cancelled" :
	    "quantity")) + 1));
	json_object_set_new(item, "cents",
	    json_integer(json_integer_value(json_object_get(item, "cents")) + price));
	json_array_append_new(json_object_get(item, cancelled ? "cancelled_ids" : "line_ids"),
	    json_string(lid));
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
		json_int_t x = json_integer_value(json_object_get(it, "cancelled"));
		json_int_t c = json_integer_value(json_object_get(it, "cents"));

		/* The unit price over every line; the total over the lines still ordered. */
		json_object_set_new(it, "unit_price", apply_cents(c / (q + x)));
		json_object_set_new(it, "total_price", apply_cents(x == 0 ? c : c / (q + x) * q));
		json_object_del(it, "cents");
	}
	return items;
}

/* Packages an order may come in; TikTok splits rarely and into few. */
#define APPLY_MAX_PACKAGES 50

/*
 * How the order ships: shipping_type, fulfillment_type, delivery option and its packages
 * ([{"id", "line_item_ids"}], from packages[] and each line's package_id).
 * Unknown or malformed values are left out, never guessed: an order without
 * a shipping type ships as TikTok's (its default for a seller-fulfilled order).
 */
static void
apply_shipping(json_t *rec, json_t *order)
{
	const char *st = json_string_value(json_object_get(order, "shipping_type"));
	const char *ft = json_string_value(json_object_get(order, "fulfillment_type"));
	json_t *pkgs = json_array(), *p, *line;
	size_t i, k;

	json_object_set_new(rec, "fulfillment_type", ft != NULL &&
	    (strcmp(ft, "FULFILLMENT_BY_SELLER") == 0 || strcmp(ft, "FULFILLMENT_BY_TIKTOK") == 0) ?
	    json_string(ft) : json_null());
	json_object_set_new(rec, "shipping_type", st != NULL && (strcmp(st, "TIKTOK") == 0 ||
	    strcmp(st, "SELLER") == 0) ? json_string(st) : json_null());
	json_object_set_new(rec, "delivery_option_id",
	    apply_id(order, "delivery_option_id") != NULL ?
	    json_string(apply_id(order, "delivery_option_id")) : json_null());
	json_array_foreach(json_object_get(order, "packages"), i, p) {
		const char *id = apply_id(p, "id");

		if (id == NULL || json_array_size(pkgs) >= APPLY_MAX_PACKAGES)
			continue;
		json_array_append_new(pkgs, json_pack("{s:s,s:[]}", "id", id, "line_item_ids"));
	}
	json_array_foreach(json_object_get(order, "line_items"), i, line) {
		const char *pid = apply_id(line, "package_id"), *lid = apply_id(line, "id");

		json_array_foreach(pkgs, k, p)
			if (pid != NULL && lid != NULL &&
			    strcmp(json_string_value(json_object_get(p, "id")), pid) == 0)
				json_array_append_new(json_object_get(p, "line_item_ids"),
				    json_string(lid));
	}
	json_object_set_new(rec, "packages", pkgs);
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
	const char *status = order_status_name(order_status_from_tiktok(ts)), *bad;
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
	apply_shipping(rec, order);
	return rec;
}

