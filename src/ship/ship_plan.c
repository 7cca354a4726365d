/*
 * ship_plan: parcels, addresses, rate rules, providers, settings checks.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orderflow/ship_plan.h"
#include "orderflow/util.h"

/* A positive number within max, or 0 when absent or not one. */
static double
sp_num(json_t *obj, const char *key, double max)
{
	json_t *v = json_object_get(obj, key);
	double d = json_is_number(v) ? json_number_value(v) : 0;

	return d > 0 && d <= max && isfinite(d) ? d : 0;
}

/* Units of item in the package: all of them, or its line ids that lines holds. */
static long long
sp_units(json_t *item, json_t *lines)
{
	json_t *ids = json_object_get(item, "line_item_ids"), *id, *l;
	long long n = 0;
	size_t i, k;

	if (lines == NULL)
		return json_integer_value(json_object_get(item, "quantity"));
	json_array_foreach(ids, i, id)
		json_array_foreach(lines, k, l)
			if (json_is_string(id) && json_is_string(l) && json_equal(id, l))
				n++;
	return n;
}

json_t *
sp_parcel(json_t *items, json_t *lines, json_t *def, char *why, size_t whysz)
{
	double weight = 0, dw = sp_num(def, "weight_oz", SP_WEIGHT_MAX);
	double dims[3] = { sp_num(def, "length_in", SP_SIZE_MAX), sp_num(def, "width_in", SP_SIZE_MAX),
	    sp_num(def, "height_in", SP_SIZE_MAX) };
	const char *unweighed = NULL;
	json_t *it, *single = NULL;
	long long units = 0;
	size_t i;

	json_array_foreach(items, i, it) {
		long long n = sp_units(it, lines);
		double w = sp_num(it, "weight_oz", SP_WEIGHT_MAX);

		if (n <= 0)
			continue;
		units += n;
		single = it;
		if (w == 0 && unweighed == NULL)
			unweighed = json_string_value(json_object_get(it, "sku"));
		weight += (double)n * w;
	}
	if (units == 0) {
		snprintf(why, whysz, "the package holds no line of the order");
		return NULL;
	}
	if (unweighed != NULL)
		weight = dw;
	if (weight > SP_WEIGHT_MAX) {
		snprintf(why, whysz, "the parcel weighs more than %.0f oz", SP_WEIGHT_MAX);
		return NULL;
	}
	if (weight <= 0) {
		snprintf(why, whysz, "no parcel weight: SKU %.100s has none and there is no default "
		    "parcel (set weight_oz on the SKU, or parcel.weight_oz in PUT "
		    "/api/settings/shipping)", unweighed != NULL ? unweighed : "");
		return NULL;
	}
	if ((dims[0] == 0 || dims[1] == 0 || dims[2] == 0) && units == 1) {
		dims[0] = sp_num(single, "length_in", SP_SIZE_MAX);
		dims[1] = sp_num(single, "width_in", SP_SIZE_MAX);
		dims[2] = sp_num(single, "height_in", SP_SIZE_MAX);
	}
	if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0) {
		snprintf(why, whysz, "no parcel size: set length_in, width_in and height_in of the "
		    "default parcel (PUT /api/settings/shipping)%s", units == 1 ? " or of the SKU" : "");
		return NULL;
	}
	return json_pack("{s:f,s:f,s:f,s:f}", "length", dims[0], "width", dims[1], "height",
	    dims[2], "weight", round(weight * 10) / 10);
}

/* The address_name of district_info's entry of level (State, City...), or NULL. */
static const char *
sp_district(json_t *addr, const char *level)
{
	json_t *d;
	size_t i;

	json_array_foreach(json_object_get(addr, "district_info"), i, d) {
		const char *l = json_string_value(json_object_get(d, "level"));

		if (l != NULL && strcasecmp(l, level) == 0)
			return json_string_value(json_object_get(d, "name"));
	}
	return NULL;
}

/* Set key to s when s is a non-empty string of at most SP_ADDR_FIELD_MAX bytes. */
static bool
sp_set(json_t *out, const char *key, const char *s)
{
	if (s == NULL || s[0] == '\0' || strlen(s) > SP_ADDR_FIELD_MAX)
		return false;
	json_object_set_new(out, key, json_string(s));
	return true;
}

json_t *
sp_to_address(json_t *addr, const char *name, const char *phone, const char *email, char *why,
    size_t whysz)
{
	json_t *out = json_object();
	const char *city = sp_district(addr, "City");
	bool ok;

	if (city == NULL)
		city = sp_district(addr, "County");
	ok = sp_set(out, "street1", json_string_value(json_object_get(addr, "address_line1")));
	sp_set(out, "street2", json_string_value(json_object_get(addr, "address_line2")));
	ok = sp_set(out, "city", city) && ok;
	sp_set(out, "state", sp_district(addr, "State"));
	ok = sp_set(out, "zip", json_string_value(json_object_get(addr, "postal_code"))) && ok;
	ok = sp_set(out, "country", json_string_value(json_object_get(addr, "region_code"))) && ok;
	sp_set(out, "name", name);
	sp_set(out, "phone", phone);
	sp_set(out, "email", email);
	if (!ok) {
		snprintf(why, whysz, "the recipient address lacks a street, city, postal code or "
		    "country (TikTok hides it while the order is on hold)");
		json_decref(out);
		return NULL;
	}
	return out;
}

long long
sp_cents(const char *s)
{
	const char *dot;
	size_t n, f;
	long long v = 0;

	if (s == NULL || (n = strlen(s)) == 0 || n > 15)
		return -1;
	dot = strchr(s, '.');
	f = dot != NULL ? n - (size_t)(dot - s) - 1 : 0;
	if (strspn(s, "0123456789") != (dot != NULL ? (size_t)(dot - s) : n) || dot == s ||
	    (dot != NULL && strspn(dot + 1, "0123456789") != f))
		return -1;
	/* EasyPost writes fees with 5 decimals ("7.58000"): more than 2 only when zeros. */
	for (size_t i = 2; i < f; i++)
		if (dot[1 + i] != '0')
			return -1;
	for (const char *p = s; *p != '\0' && p != dot; p++)
		v = v * 10 + (*p - '0');
	v *= 100;
	if (f >= 1)
		v += (dot[1] - '0') * 10;
	if (f >= 2)
		v += dot[2] - '0';
	return v;
}

static const char *
sp_or(const char *s, const char *def)
{
	return s != NULL ? s : def;
}

/* Days a rate takes; unknown counts as slow. */
static long long
sp_days(json_t *rate)
{
	json_t *d = json_object_get(rate, "delivery_days");

	if (!json_is_integer(d))
		d = json_object_get(rate, "est_delivery_days");
	return json_is_integer(d) && json_integer_value(d) >= 0 ? json_integer_value(d) : 1000;
}

/* The rule's carrier and service constraints and cap hold for rate. */
static bool
sp_rate_allowed(json_t *rate, json_t *rule, long long cap)
{
	const char *want_c = json_string_value(json_object_get(rule, "carrier"));
	const char *want_s = json_string_value(json_object_get(rule, "service"));
	const char *c = json_string_value(json_object_get(rate, "carrier"));
	const char *s = json_string_value(json_object_get(rate, "service"));
	long long cents = sp_cents(json_string_value(json_object_get(rate, "rate")));

	if (cents < 0 || c == NULL || s == NULL || json_string_value(json_object_get(rate, "id")) == NULL)
		return false;
	if (want_c != NULL && strcasecmp(want_c, c) != 0)
		return false;
	if (want_s != NULL && strcasecmp(want_s, s) != 0)
		return false;
	return cap < 0 || cents <= cap;
}

int
sp_choose_rate(json_t *rates, json_t *rule, char *why, size_t whysz)
{
	const char *choose = json_string_value(json_object_get(rule, "choose"));
	bool fastest = choose != NULL && strcmp(choose, "fastest") == 0;
	long long cap = sp_cents(json_string_value(json_object_get(rule, "max_cost")));
	int best = -1;
	long long bc = 0, bd = 0;
	json_t *r;
	size_t i;

	json_array_foreach(rates, i, r) {
		long long c, d;

		if (!sp_rate_allowed(r, rule, cap))
			continue;
		c = sp_cents(json_string_value(json_object_get(r, "rate")));
		d = sp_days(r);
		if (best < 0 || (fastest ? d < bd || (d == bd && c < bc) : c < bc || (c == bc && d < bd))) {
			best = (int)i;
			bc = c;
			bd = d;
		}
	}
	if (best < 0)
		snprintf(why, whysz, "none of the carrier's %zu rates matches the rate rule "
		    "(carrier %.40s, service %.40s, max_cost %.20s)", json_array_size(rates),
		    sp_or(json_string_value(json_object_get(rule, "carrier")), "any"),
		    sp_or(json_string_value(json_object_get(rule, "service")), "any"),
		    sp_or(json_string_value(json_object_get(rule, "max_cost")), "none"));
	return best;
}

const char *
sp_provider_id(json_t *providers, const char *carrier)
{
	json_t *p;
	size_t i;

	json_array_foreach(providers, i, p) {
		const char *n = json_string_value(json_object_get(p, "name"));
		const char *id = json_string_value(json_object_get(p, "id"));

		if (n != NULL && id != NULL && carrier != NULL && strcasecmp(n, carrier) == 0)
			return id;
	}
	return NULL;
}

/* ---- settings ---------------------------------------------------------------- */

static const char *
sp_fail(char *why, size_t whysz, const char *field, const char *msg)
{
	snprintf(why, whysz, "%s: %s", field, msg);
	return why;
}

/* Every key of obj is in keys, and is a string of at most max bytes. */
static const char *
sp_strings(json_t *obj, const char *const *keys, const char *path, char *why, size_t whysz)
{
	const char *k;
	json_t *v;
	char f[128];

	json_object_foreach(obj, k, v) {
		size_t i;

		for (i = 0; keys[i] != NULL && strcmp(keys[i], k) != 0; i++)
			;
		snprintf(f, sizeof(f), "%s.%.60s", path, k);
		if (keys[i] == NULL)
			return sp_fail(why, whysz, f, "unknown field");
		if (!json_is_string(v) || strlen(json_string_value(v)) > SP_ADDR_FIELD_MAX)
			return sp_fail(why, whysz, f, "must be a string of at most 200 bytes");
	}
	return NULL;
}

static const char *
sp_address_invalid(json_t *a, char *why, size_t whysz)
{
	static const char *const keys[] = { "name", "company", "street1", "street2", "city",
	    "state", "zip", "country", "phone", "email", NULL };
	static const char *const need[] = { "street1", "city", "zip", "country" };
	const char *bad;

	if (!json_is_object(a))
		return sp_fail(why, whysz, "from_address", "must be an object");
	if ((bad = sp_strings(a, keys, "from_address", why, whysz)) != NULL)
		return bad;
	for (size_t i = 0; i < NELEM(need); i++) {
		const char *s = json_string_value(json_object_get(a, need[i]));

		if (s == NULL || s[0] == '\0') {
			snprintf(why, whysz, "from_address.%s: required", need[i]);
			return why;
		}
	}
	return NULL;
}

const char *
sp_parcel_invalid(json_t *p, char *why, size_t whysz)
{
	const char *k;
	json_t *v;

	if (!json_is_object(p))
		return sp_fail(why, whysz, "parcel", "must be an object");
	json_object_foreach(p, k, v) {
		double max = strcmp(k, "weight_oz") == 0 ? SP_WEIGHT_MAX : SP_SIZE_MAX;

		if (strcmp(k, "weight_oz") != 0 && strcmp(k, "length_in") != 0 &&
		    strcmp(k, "width_in") != 0 && strcmp(k, "height_in") != 0) {
			snprintf(why, whysz, "parcel.%.60s: unknown field", k);
			return why;
		}
		if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > max) {
			snprintf(why, whysz, "parcel.%s: must be a number above 0 and at most %.0f", k, max);
			return why;
		}
	}
	return NULL;
}

static const char *
sp_rule_invalid(json_t *r, char *why, size_t whysz)
{
	static const char *const keys[] = { "choose", "carrier", "service", "max_cost", NULL };
	const char *c = json_string_value(json_object_get(r, "choose")), *bad;
	json_t *mc = json_object_get(r, "max_cost");

	if (!json_is_object(r))
		return sp_fail(why, whysz, "rate_rule", "must be an object");
	if ((bad = sp_strings(r, keys, "rate_rule", why, whysz)) != NULL)
		return bad;
	if (c != NULL && strcmp(c, "cheapest") != 0 && strcmp(c, "fastest") != 0)
		return sp_fail(why, whysz, "rate_rule.choose", "must be cheapest or fastest");
	if (mc != NULL && sp_cents(json_string_value(mc)) < 0)
		return sp_fail(why, whysz, "rate_rule.max_cost",
		    "must be a decimal string such as \"12.50\"");
	return NULL;
}

const char *
sp_settings_invalid(json_t *s, char *why, size_t whysz)
{
	const char *k, *h;
	json_t *v;

	if (!json_is_object(s))
		return sp_fail(why, whysz, "body", "must be a JSON object");
	json_object_foreach(s, k, v) {
		const char *bad = NULL;

		if (strcmp(k, "from_address") == 0)
			bad = sp_address_invalid(v, why, whysz);
		else if (strcmp(k, "parcel") == 0)
			bad = sp_parcel_invalid(v, why, whysz);
		else if (strcmp(k, "rate_rule") == 0)
			bad = sp_rule_invalid(v, why, whysz);
		else if (strcmp(k, "handover_method") == 0) {
			h = json_string_value(v);
			if (h == NULL || (strcmp(h, "PICKUP") != 0 && strcmp(h, "DROP_OFF") != 0))
				bad = sp_fail(why, whysz, k, "must be PICKUP or DROP_OFF");
		} else {
			snprintf(why, whysz, "%.60s: unknown field", k);
			bad = why;
		}
		if (bad != NULL)
			return bad;
	}
	return NULL;
}
