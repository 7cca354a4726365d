/*
 * Unit tests for order: the state machine (every allowed transition and
 * every refused one), its JSON form for the SQL side, the names (which
 * must be the PostgreSQL enums' of sql/001_schema.sql, in order), and the
 * TikTok status map.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "orderflow/order.h"
#include "orderflow/util.h"

/* The machine as orderflowd(8) documents it, written out by hand. */
static const struct {
	const char	*from;
	const char	*to[3];
} expected[] = {
	{ "pending", { "confirmed", "cancelled" } },
	{ "confirmed", { "processing", "cancelled" } },
	{ "processing", { "shipped", "cancelled" } },
	{ "shipped", { "delivered" } },
	{ "delivered", { "returned" } },
	{ "cancelled", { NULL } },
	{ "returned", { NULL } },
};

static bool
expected_allows(int from, int to)
{
	for (int i = 0; i < 3 && expected[from].to[i] != NULL; i++)
		if (strcmp(expected[from].to[i], order_status_name(to)) == 0)
			return true;
	return false;
}

/* All 49 pairs: allowed exactly where the documented machine says. */
static void
test_every_transition(void **state)
{
	int allowed = 0;

	assert_int_equal(NELEM(expected), ORDER_STATUS_COUNT);
	for (int from = 0; from < ORDER_STATUS_COUNT; from++) {
		assert_string_equal(order_status_name(from), expected[from].from);
		for (int to = 0; to < ORDER_STATUS_COUNT; to++) {
			bool want = expected_allows(from, to);

			if (order_transition_allowed(from, to) != want)
				fail_msg("%s -> %s: allowed %d, documented %d", order_status_name(from),
				    order_status_name(to), !want, want);
			allowed += want;
		}
	}
	assert_int_equal(allowed, 8);
	/* No status may stay as it is, and nothing out of range passes. */
	for (int s = 0; s < ORDER_STATUS_COUNT; s++)
		assert_false(order_transition_allowed(s, s));
	assert_false(order_transition_allowed(-1, ORDER_CONFIRMED));
	assert_false(order_transition_allowed(ORDER_PENDING, ORDER_STATUS_COUNT));
}

/* The JSON handed to order_change says the same as the table. */
static void
test_machine_json(void **state)
{
	char buf[ORDER_MACHINE_JSON_MAX];
	json_t *doc;

	order_machine_json(buf, sizeof(buf));
	assert_true(strlen(buf) < sizeof(buf) - 1);
	doc = json_loads(buf, 0, NULL);
	assert_non_null(doc);
	assert_int_equal(json_object_size(doc), ORDER_STATUS_COUNT);
	for (int from = 0; from < ORDER_STATUS_COUNT; from++) {
		json_t *to = json_object_get(doc, order_status_name(from));
		size_t i;
		json_t *v;
		int n = 0;

		assert_true(json_is_array(to));
		json_array_foreach(to, i, v) {
			assert_true(order_transition_allowed(from,
			    order_status_parse(json_string_value(v))));
			n++;
		}
		for (int t = 0; t < ORDER_STATUS_COUNT; t++)
			n -= order_transition_allowed(from, t);
		assert_int_equal(n, 0);
	}
	json_decref(doc);
}

/* Read the labels of CREATE TYPE name AS ENUM (...) from the schema, in order. */
static int
schema_enum(const char *type, char labels[][32], int max)
{
	char path[4096], *text, *p, *end;
	FILE *f;
	long len;
	int n = 0;

	snprintf(path, sizeof(path), "%s/sql/001_schema.sql", getenv("OF_SRCDIR") ?
	    getenv("OF_SRCDIR") : SRCDIR);
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = xcalloc(1, (size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	snprintf(path, sizeof(path), "CREATE TYPE %s AS ENUM (", type);
	p = strstr(text, path);
	assert_non_null(p);
	end = strchr(p, ')');
	for (p = strchr(p, '\''); p != NULL && p < end && n < max; p = strchr(p + 1, '\'')) {
		char *q = strchr(p + 1, '\'');

		snprintf(labels[n++], 32, "%.*s", (int)(q - p - 1), p + 1);
		p = q;
	}
	free(text);
	return n;
}

/* The names are the database's, in the same order (the stats and casts rely on it). */
static void
test_names_match_schema(void **state)
{
	char labels[16][32];
	int n = schema_enum("order_status", labels, 16);

	assert_int_equal(n, ORDER_STATUS_COUNT);
	for (int i = 0; i < n; i++) {
		assert_string_equal(order_status_name(i), labels[i]);
		assert_int_equal(order_status_parse(labels[i]), i);
	}
	/* workflow_status: 001's values, then "cancelled" added by sql/008 at the end. */
	n = schema_enum("workflow_status", labels, 16);
	assert_int_equal(n, ORDER_WF_STATUS_COUNT - 1);
	for (int i = 0; i < n; i++)
		assert_string_equal(order_wf_status_name(i), labels[i]);
	assert_string_equal(order_wf_status_name(ORDER_WF_CANCELLED), "cancelled");
	assert_null(order_status_name(ORDER_STATUS_COUNT));
	assert_int_equal(order_status_parse("lost"), -1);
	assert_int_equal(order_status_parse(NULL), -1);
}

/* TikTok's statuses, both spellings of the cancellation, and the holds. */
static void
test_tiktok_map(void **state)
{
	static const struct { const char *tt; int st; bool before, hold; } m[] = {
		{ "UNPAID", ORDER_PENDING, true, true },
		{ "ON_HOLD", ORDER_PENDING, true, true },
		{ "AWAITING_SHIPMENT", ORDER_CONFIRMED, true, false },
		{ "PARTIALLY_SHIPPING", ORDER_PROCESSING, false, false },
		{ "AWAITING_COLLECTION", ORDER_PROCESSING, false, false },
		{ "IN_TRANSIT", ORDER_SHIPPED, false, false },
		{ "DELIVERED", ORDER_DELIVERED, false, false },
		{ "COMPLETED", ORDER_DELIVERED, false, false },
		{ "CANCELLED", ORDER_CANCELLED, false, false },
		{ "CANCEL", ORDER_CANCELLED, false, false },
	};

	for (size_t i = 0; i < NELEM(m); i++) {
		assert_int_equal(order_status_from_tiktok(m[i].tt), m[i].st);
		assert_int_equal(order_tiktok_before_shipping(m[i].tt), m[i].before);
		assert_int_equal(order_tiktok_on_hold(m[i].tt), m[i].hold);
	}
	assert_int_equal(order_status_from_tiktok("awaiting_shipment"), -1);
	assert_int_equal(order_status_from_tiktok(NULL), -1);
	assert_false(order_tiktok_before_shipping("SOMETHING_NEW"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_transition),
		cmocka_unit_test(test_machine_json),
		cmocka_unit_test(test_names_match_schema),
		cmocka_unit_test(test_tiktok_map),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
