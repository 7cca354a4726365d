/*
 * Unit tests for wf_cond: every operator on every field type, money in
 * cents, missing and mistyped facts, nesting, the limits, and each kind
 * of parse error with its exact path.
 *
 * JSON in these tests is written with ' for " so it reads as JSON.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/util.h"
#include "orderflow/wf_cond.h"

#include "unit.h"

/* One comparison and whether it must hold. */
struct cmp_case {
	const char	*op;		/* the operator */
	const char	*value;		/* its value, JSON with ' for " */
	bool		want;		/* whether it holds for the case's facts */
};

/* JSON written with ' for " (unit.h). */
static json_t *
load(const char *text)
{
	return unit_json(text, JSON_ALLOW_NUL);
}

/* Whether condition c holds for facts (both JSON text); c must parse. */
static bool
holds(const char *c, const char *facts)
{
	json_t *cv = load(c), *fv = load(facts);
	struct wf_err err;
	struct wf_cond *cond = wf_cond_parse(cv, "$", &err);
	bool r;

	if (cond == NULL)
		fail_msg("condition %s refused at %s: %s", c, err.path, err.msg);
	r = wf_cond_eval(cond, fv);
	wf_cond_free(cond);
	json_decref(cv);
	json_decref(fv);
	return r;
}

/* The comparison {field, op, value} as JSON text in buf. */
static const char *
cmp_text(char *buf, size_t size, const char *field, const char *op, const char *value)
{
	snprintf(buf, size, "{'field':'%s','op':'%s','value':%s}", field, op, value);
	return buf;
}

/* Every case of cases[n] on field holds or not as it says, for facts. */
static void
check_cases(const char *field, const struct cmp_case *cases, size_t n, const char *facts)
{
	char buf[512];

	for (size_t i = 0; i < n; i++) {
		cmp_text(buf, sizeof(buf), field, cases[i].op, cases[i].value);
		if (holds(buf, facts) != cases[i].want)
			fail_msg("%s for facts %s: expected %s", buf, facts,
			    cases[i].want ? "true" : "false");
	}
}

/* Condition text (parsed at base) is refused at path with a message containing msg. */
static void
refused_at(const char *text, const char *base, const char *path, const char *msg)
{
	json_t *v = load(text);
	struct wf_err err;
	struct wf_cond *c = wf_cond_parse(v, base, &err);

	json_decref(v);
	if (c != NULL) {
		wf_cond_free(c);
		fail_msg("condition %s was accepted", text);
	}
	if (strcmp(err.path, path) != 0 || strstr(err.msg, msg) == NULL)
		fail_msg("condition %s: got %s \"%s\", expected %s \"...%s...\"", text, err.path,
		    err.msg, path, msg);
}

/* refused_at with the condition at the root. */
static void
refused(const char *text, const char *path, const char *msg)
{
	refused_at(text, "$", path, msg);
}

/* total_amount op value holds for facts {"total_amount": fact}. */
static bool
money(const char *op, const char *value, const char *fact)
{
	char c[256], facts[128];

	snprintf(facts, sizeof(facts), "{'total_amount':%s}", fact);
	return holds(cmp_text(c, sizeof(c), "total_amount", op, value), facts);
}

static void
test_money_every_operator_in_cents(void **state)
{
	static const struct cmp_case cases[] = {
		{ "eq", "12.5", true }, { "eq", "'12.50'", true }, { "eq", "12", false },
		{ "eq", "'12.51'", false }, { "ne", "'12.51'", true }, { "ne", "12.50", false },
		{ "lt", "12.51", true }, { "lt", "12.50", false }, { "le", "'12.5'", true },
		{ "le", "12.49", false }, { "gt", "12.49", true }, { "gt", "'12.50'", false },
		{ "ge", "12.50", true }, { "ge", "'12.51'", false },
	};

	(void)state;
	/* 12.5 written three ways in the condition, the fact "12.50" as stored. */
	check_cases("total_amount", cases, NELEM(cases), "{'total_amount':'12.5'}");
	check_cases("total_amount", cases, NELEM(cases), "{'total_amount':'12.50'}");
}

static void
test_money_decimal_values_compare_exactly(void **state)
{
	(void)state;
	/* 0.1 + 0.2 != 0.3 in doubles; in cents 10 + 20 == 30. */
	assert_true(money("eq", "0.3", "'0.30'"));
	assert_true(money("eq", "'0.30'", "'0.3'"));
	assert_true(money("ge", "0.30", "'0.30'"));
	assert_false(money("gt", "0.30", "'0.30'"));
	assert_false(money("lt", "0.1", "'0.10'"));
	assert_true(money("eq", "0.10", "'0.1'"));
	assert_true(money("eq", "0.20", "'0.20'"));
	assert_true(money("le", "19.99", "'19.99'"));
	assert_true(money("lt", "20", "'19.99'"));
	assert_true(money("eq", "1.1", "'1.10'"));
	assert_true(money("eq", "0", "'0.00'"));
	assert_true(money("eq", "'0'", "'0'"));
	assert_true(money("eq", "9999999999.99", "'9999999999.99'"));
	assert_true(money("lt", "'9999999999.99'", "'9999999999.98'"));
	/* A real without a fraction and an exponent form are whole amounts. */
	assert_true(money("eq", "100.0", "'100'"));
	assert_true(money("eq", "1e2", "'100.00'"));
}

static void
test_money_values_refused(void **state)
{
	static const char *const bad[] = {
		"0.125", "12.505", "1e-3", "'12.505'", "'1e3'", "'-1'", "-1", "-0.5", "'.5'",
		"'12.'", "''", "'1,00'", "' 1'", "'+1'", "'12.5 '", "10000000000",
		"'10000000000.00'", "1e10", "true", "null", "['1']", "{}", "'abc'", "'12\\u00005'",
	};
	char c[256];

	(void)state;
	for (size_t i = 0; i < NELEM(bad); i++)
		refused(cmp_text(c, sizeof(c), "total_amount", "ge", bad[i]), "$.value",
		    "must be an amount");
}

static void
test_money_facts_missing_or_malformed_are_false(void **state)
{
	static const char *const ops[] = { "eq", "ne", "lt", "le", "gt", "ge" };
	static const char *const facts[] = {
		"{}", "{'total_amount':null}", "{'total_amount':'abc'}", "{'total_amount':'1.005'}",
		"{'total_amount':'-1.00'}", "{'total_amount':true}", "{'total_amount':['1']}",
	};
	char c[256];

	(void)state;
	for (size_t f = 0; f < NELEM(facts); f++) {
		for (size_t o = 0; o < NELEM(ops); o++) {
			cmp_text(c, sizeof(c), "total_amount", ops[o], "1");
			if (holds(c, facts[f]))
				fail_msg("%s held for %s", c, facts[f]);
		}
	}
	/* A fact given as a JSON number is read like the same decimal string. */
	assert_true(money("eq", "'12.50'", "12.5"));
	assert_true(money("eq", "12", "12"));
}

static void
test_integer_every_operator(void **state)
{
	static const struct cmp_case cases[] = {
		{ "eq", "3", true }, { "eq", "4", false },
		{ "ne", "4", true }, { "ne", "3", false },
		{ "lt", "4", true }, { "lt", "3", false },
		{ "le", "3", true }, { "le", "2", false },
		{ "gt", "2", true }, { "gt", "3", false }, { "gt", "-1", true },
		{ "ge", "3", true }, { "ge", "4", false },
	};
	static const char *const fields[] = { "item_count", "priority_level" };
	char facts[128], c[256];

	(void)state;
	for (size_t i = 0; i < NELEM(fields); i++) {
		snprintf(facts, sizeof(facts), "{'%s':3}", fields[i]);
		check_cases(fields[i], cases, NELEM(cases), facts);
		/* A number written as a string or a real is not an integer. */
		snprintf(facts, sizeof(facts), "{'%s':'3'}", fields[i]);
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "eq", "3"), facts));
		snprintf(facts, sizeof(facts), "{'%s':3.0}", fields[i]);
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "eq", "3"), facts));
		refused(cmp_text(c, sizeof(c), fields[i], "eq", "3.0"), "$.value",
		    "must be an integer");
		refused(cmp_text(c, sizeof(c), fields[i], "gt", "'3'"), "$.value",
		    "must be an integer");
		refused(cmp_text(c, sizeof(c), fields[i], "in", "[3]"), "$.op",
		    "does not apply to");
	}
}

static void
test_string_every_operator_case_sensitive(void **state)
{
	static const struct cmp_case cases[] = {
		{ "eq", "'US'", true }, { "eq", "'us'", false }, { "eq", "''", false },
		{ "ne", "'us'", true }, { "ne", "'US'", false },
		{ "in", "['CA','US']", true }, { "in", "['CA','us']", false },
		{ "not_in", "['CA']", true }, { "not_in", "['US','CA']", false },
	};
	static const char *const fields[] = { "currency", "payment_status", "region",
	    "tiktok_status", "shipping_method", "order_source" };
	char facts[128], c[256];

	(void)state;
	for (size_t i = 0; i < NELEM(fields); i++) {
		snprintf(facts, sizeof(facts), "{'%s':'US'}", fields[i]);
		check_cases(fields[i], cases, NELEM(cases), facts);
		snprintf(facts, sizeof(facts), "{'%s':5}", fields[i]);
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "ne", "'US'"), facts));
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "not_in", "['US']"),
		    facts));
	}
}

static void
test_string_values_refused(void **state)
{
	char c[1024], big[300];

	(void)state;
	refused("{'field':'region','op':'eq','value':['US']}", "$.value", "must be a string");
	refused("{'field':'region','op':'ne','value':5}", "$.value", "must be a string");
	refused("{'field':'region','op':'in','value':'US'}", "$.value",
	    "\"in\" takes an array of 1 to 100 strings");
	refused("{'field':'region','op':'not_in','value':[]}", "$.value", "1 to 100");
	refused("{'field':'region','op':'in','value':['US',5]}", "$.value[1]",
	    "must be a string");
	refused("{'field':'region','op':'eq','value':'U\\u0000S'}", "$.value", "NUL");
	refused("{'field':'currency','op':'lt','value':'USD'}", "$.op",
	    "operator \"lt\" does not apply to currency (a string field)");
	refused("{'field':'region','op':'contains','value':'US'}", "$.op", "does not apply");
	/* 255 bytes are allowed, 256 are not. */
	memset(big, 'a', 255);
	big[255] = '\0';
	snprintf(c, sizeof(c), "{'field':'region','op':'eq','value':'%s'}", big);
	assert_false(holds(c, "{'region':'US'}"));
	snprintf(c, sizeof(c), "{'field':'region','op':'eq','value':'%sa'}", big);
	refused(c, "$.value", "at most 255 bytes");
}

/* A JSON array of n strings "v0".."v<n-1>" into buf. */
static const char *
str_list(char *buf, size_t size, int n)
{
	size_t len = (size_t)snprintf(buf, size, "[");

	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s'v%d'", i ? "," : "", i);
	snprintf(buf + len, size - len, "]");
	return buf;
}

static void
test_list_of_100_values_allowed_101_refused(void **state)
{
	char list[1024], c[1200];

	(void)state;
	cmp_text(c, sizeof(c), "region", "in", str_list(list, sizeof(list), 100));
	assert_true(holds(c, "{'region':'v99'}"));
	cmp_text(c, sizeof(c), "tags", "contains_any", str_list(list, sizeof(list), 100));
	assert_true(holds(c, "{'tags':['v0']}"));
	cmp_text(c, sizeof(c), "region", "in", str_list(list, sizeof(list), 101));
	refused(c, "$.value", "1 to 100");
	cmp_text(c, sizeof(c), "skus", "contains_all", str_list(list, sizeof(list), 101));
	refused(c, "$.value", "1 to 100");
}

static void
test_boolean_every_operator(void **state)
{
	static const struct cmp_case when_true[] = {
		{ "eq", "true", true }, { "eq", "false", false },
		{ "ne", "false", true }, { "ne", "true", false },
	};
	static const struct cmp_case when_false[] = {
		{ "eq", "false", true }, { "eq", "true", false },
		{ "ne", "true", true }, { "ne", "false", false },
	};
	static const char *const fields[] = { "is_on_hold", "buyer_request_cancel" };
	char facts[128], c[256];

	(void)state;
	for (size_t i = 0; i < NELEM(fields); i++) {
		snprintf(facts, sizeof(facts), "{'%s':true}", fields[i]);
		check_cases(fields[i], when_true, NELEM(when_true), facts);
		snprintf(facts, sizeof(facts), "{'%s':false}", fields[i]);
		check_cases(fields[i], when_false, NELEM(when_false), facts);
		snprintf(facts, sizeof(facts), "{'%s':'true'}", fields[i]);
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "eq", "true"), facts));
		refused(cmp_text(c, sizeof(c), fields[i], "eq", "'true'"), "$.value",
		    "must be true or false");
		refused(cmp_text(c, sizeof(c), fields[i], "eq", "1"), "$.value",
		    "must be true or false");
		refused(cmp_text(c, sizeof(c), fields[i], "gt", "true"), "$.op",
		    "(a boolean field)");
	}
}

static void
test_string_list_every_operator(void **state)
{
	static const struct cmp_case cases[] = {
		{ "contains", "'vip'", true }, { "contains", "'VIP'", false },
		{ "contains_any", "['x','gift']", true }, { "contains_any", "['x','y']", false },
		{ "contains_all", "['gift','vip']", true },
		{ "contains_all", "['vip','x']", false },
		{ "not_contains", "'x'", true }, { "not_contains", "'vip'", false },
	};
	static const struct cmp_case when_empty[] = {
		{ "contains", "'vip'", false }, { "contains_any", "['vip']", false },
		{ "contains_all", "['vip']", false }, { "not_contains", "'vip'", true },
	};
	static const char *const fields[] = { "tags", "skus" };
	char facts[128], c[256];

	(void)state;
	for (size_t i = 0; i < NELEM(fields); i++) {
		snprintf(facts, sizeof(facts), "{'%s':['vip',5,'gift']}", fields[i]);
		check_cases(fields[i], cases, NELEM(cases), facts);
		snprintf(facts, sizeof(facts), "{'%s':[]}", fields[i]);
		check_cases(fields[i], when_empty, NELEM(when_empty), facts);
		/* A string is not a list of strings. */
		snprintf(facts, sizeof(facts), "{'%s':'vip'}", fields[i]);
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "contains", "'vip'"), facts));
		assert_false(holds(cmp_text(c, sizeof(c), fields[i], "not_contains", "'x'"),
		    facts));
		refused(cmp_text(c, sizeof(c), fields[i], "contains", "['vip']"), "$.value",
		    "must be a string");
		refused(cmp_text(c, sizeof(c), fields[i], "contains_all", "'vip'"), "$.value",
		    "\"contains_all\" takes an array");
		refused(cmp_text(c, sizeof(c), fields[i], "eq", "'vip'"), "$.op",
		    "(a string list field)");
	}
}

static void
test_missing_fact_makes_every_comparison_false_and_not_true(void **state)
{
	static const char *const conds[] = {
		"{'field':'total_amount','op':'ne','value':1}",
		"{'field':'item_count','op':'ne','value':1}",
		"{'field':'priority_level','op':'lt','value':100}",
		"{'field':'currency','op':'ne','value':'USD'}",
		"{'field':'region','op':'not_in','value':['US']}",
		"{'field':'is_on_hold','op':'ne','value':true}",
		"{'field':'buyer_request_cancel','op':'eq','value':false}",
		"{'field':'tags','op':'not_contains','value':'vip'}",
		"{'field':'skus','op':'contains_any','value':['A']}",
	};
	char c[512];

	(void)state;
	for (size_t i = 0; i < NELEM(conds); i++) {
		if (holds(conds[i], "{}") || holds(conds[i], "{'other':1}"))
			fail_msg("%s held without its fact", conds[i]);
		snprintf(c, sizeof(c), "{'not':%s}", conds[i]);
		if (!holds(c, "{}"))
			fail_msg("%s did not hold without its fact", c);
	}
	/* Facts that are not an object have no fields at all. */
	assert_false(holds(conds[0], "[]"));
	assert_false(holds(conds[0], "null"));
}

static void
test_all_any_not_combine(void **state)
{
	const char *big_us = "{'all':[{'field':'total_amount','op':'ge','value':100},"
	    "{'field':'region','op':'eq','value':'US'}]}";
	const char *vip_or_big = "{'any':[{'field':'tags','op':'contains','value':'vip'},"
	    "{'field':'item_count','op':'gt','value':10}]}";
	const char *nested = "{'all':[{'not':{'field':'is_on_hold','op':'eq','value':true}},"
	    "{'any':[{'field':'currency','op':'in','value':['USD','EUR']},"
	    "{'all':[{'field':'priority_level','op':'ge','value':5}]}]}]}";

	(void)state;
	assert_true(holds(big_us, "{'total_amount':'100.00','region':'US'}"));
	assert_false(holds(big_us, "{'total_amount':'99.99','region':'US'}"));
	assert_false(holds(big_us, "{'total_amount':'100.00','region':'CA'}"));
	assert_true(holds(vip_or_big, "{'tags':['vip'],'item_count':1}"));
	assert_true(holds(vip_or_big, "{'tags':[],'item_count':11}"));
	assert_false(holds(vip_or_big, "{'tags':[],'item_count':10}"));
	assert_true(holds(nested, "{'is_on_hold':false,'currency':'EUR'}"));
	assert_true(holds(nested, "{'is_on_hold':false,'currency':'GBP','priority_level':5}"));
	assert_false(holds(nested, "{'is_on_hold':false,'currency':'GBP','priority_level':4}"));
	assert_false(holds(nested, "{'is_on_hold':true,'currency':'USD'}"));
	assert_true(holds("{'not':{'not':{'field':'region','op':'eq','value':'US'}}}",
	    "{'region':'US'}"));
	/* A NULL condition (an absent "if") always holds. */
	assert_true(wf_cond_eval(NULL, NULL));
}

/* n levels of key ("not", or "all" with one kid) around one comparison, into buf. */
static const char *
nest(char *buf, size_t size, const char *key, int n)
{
	bool all = strcmp(key, "all") == 0;
	size_t len = 0;

	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "{'%s':%s", key, all ? "[" : "");
	len += (size_t)snprintf(buf + len, size - len, "{'field':'region','op':'eq','value':'US'}");
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s}", all ? "]" : "");
	return buf;
}

static void
test_nesting_8_levels_allowed_9_refused(void **state)
{
	char c[1024];

	(void)state;
	assert_true(holds(nest(c, sizeof(c), "not", 8), "{'region':'US'}"));
	assert_false(holds(nest(c, sizeof(c), "not", 7), "{'region':'US'}"));
	assert_true(holds(nest(c, sizeof(c), "all", 8), "{'region':'US'}"));
	refused(nest(c, sizeof(c), "not", 9), "$.not.not.not.not.not.not.not.not",
	    "at most 8 levels");
	refused(nest(c, sizeof(c), "all", 9),
	    "$.all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0]", "at most 8 levels");
}

/* {"any": [any of 15 comparisons x3, any of last comparisons]}: 49 + last + 1 nodes. */
static json_t *
wide(int last)
{
	json_t *groups = json_array();

	for (int g = 0; g < 4; g++) {
		json_t *any = json_array();

		for (int i = 0; i < (g < 3 ? 15 : last); i++)
			json_array_append_new(any, json_pack("{s:s,s:s,s:i}", "field",
			    "item_count", "op", "eq", "value", g * 100 + i));
		json_array_append_new(groups, json_pack("{s:o}", "any", any));
	}
	return json_pack("{s:o}", "any", groups);
}

static void
test_64_nodes_allowed_65_refused(void **state)
{
	json_t *ok = wide(14), *big = wide(15), *facts = json_pack("{s:i}", "item_count", 313);
	struct wf_err err;
	struct wf_cond *c = wf_cond_parse(ok, "$", &err);

	(void)state;
	assert_non_null(c);
	assert_true(wf_cond_eval(c, facts));
	wf_cond_free(c);
	assert_null(wf_cond_parse(big, "$", &err));
	assert_string_equal(err.path, "$.any[3].any[14]");
	assert_non_null(strstr(err.msg, "at most 64 nodes"));
	json_decref(ok);
	json_decref(big);
	json_decref(facts);
}

/* {"any": [item_count eq 0, ..., item_count eq n-1]} into buf. */
static const char *
any_of(char *buf, size_t size, int n)
{
	size_t len = (size_t)snprintf(buf, size, "{'any':[");

	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len,
		    "%s{'field':'item_count','op':'eq','value':%d}", i ? "," : "", i);
	snprintf(buf + len, size - len, "]}");
	return buf;
}

static void
test_all_any_take_1_to_16_conditions(void **state)
{
	char c[2048];

	(void)state;
	assert_true(holds(any_of(c, sizeof(c), 16), "{'item_count':15}"));
	assert_true(holds(any_of(c, sizeof(c), 1), "{'item_count':0}"));
	refused(any_of(c, sizeof(c), 17), "$.any", "1 to 16 conditions");
	refused("{'all':[]}", "$.all", "\"all\" takes an array of 1 to 16 conditions");
	refused("{'any':{}}", "$.any", "takes an array");
}

static void
test_parse_errors_name_their_path(void **state)
{
	static const struct {
		const char	*text;		/* the condition */
		const char	*path;		/* where it is wrong */
		const char	*msg;		/* part of the message */
	} cases[] = {
		{ "5", "$", "a condition must be an object" },
		{ "null", "$", "must be an object" },
		{ "[]", "$", "must be an object" },
		{ "{}", "$", "needs \"all\", \"any\", \"not\" or \"field\"" },
		{ "{'op':'eq','value':1}", "$", "needs \"all\"" },
		{ "{'field':'region','op':'eq','value':'US','x':1}", "$.x", "unknown field" },
		{ "{'field':'region','op':'eq','value':'US','a b':1}", "$[\"a b\"]",
		    "unknown field" },
		{ "{'all':[{'field':'region','op':'eq','value':'US'}],'any':[]}", "$.any",
		    "\"any\" cannot be combined with \"all\"" },
		{ "{'not':{'field':'region','op':'eq','value':'US'},'field':'x'}", "$.field",
		    "cannot be combined with \"not\"" },
		{ "{'field':'colour','op':'eq','value':'red'}", "$.field",
		    "unknown field \"colour\"" },
		{ "{'field':5,'op':'eq','value':'red'}", "$.field", "must be a string" },
		{ "{'field':'region','value':'US'}", "$", "missing \"op\"" },
		{ "{'field':'region','op':1,'value':'US'}", "$.op", "must be a string" },
		{ "{'field':'region','op':'like','value':'US'}", "$.op",
		    "unknown operator \"like\"" },
		{ "{'field':'region','op':'eq'}", "$", "missing \"value\"" },
		{ "{'not':5}", "$.not", "a condition must be an object" },
		{ "{'not':null}", "$.not", "must be an object" },
		{ "{'any':[{'field':'region','op':'eq','value':'US'},"
		    "{'not':{'field':'tags','op':'contains','value':['a']}}]}",
		    "$.any[1].not.value", "must be a string" },
		{ "{'field':'tags','op':'contains_any','value':['a',5]}", "$.value[1]",
		    "must be a string" },
		{ "{'all':[{'field':'region','op':'eq','value':'US'},{'any':[{'field':"
		    "'item_count','op':'ge','value':'1'}]}]}", "$.all[1].any[0].value",
		    "must be an integer" },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++)
		refused(cases[i].text, cases[i].path, cases[i].msg);
	/* The caller's path is the prefix of every path. */
	refused_at("{'all':[{'field':'region','op':'lt','value':'US'}]}", "$.rules[3].if",
	    "$.rules[3].if.all[0].op", "does not apply");
}

static void
test_err_set_copies_path_and_formats_message(void **state)
{
	struct wf_err err;
	char longpath[400];

	(void)state;
	/* The path is never a format: a client's key may hold %. */
	assert_null(wf_err_set(&err, "$[\"%s%n\"]", "at most %d of %s", 3, "them"));
	assert_string_equal(err.path, "$[\"%s%n\"]");
	assert_string_equal(err.msg, "at most 3 of them");
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	wf_err_set(&err, longpath, "cut");
	assert_int_equal(strlen(err.path), sizeof(err.path) - 1);
	assert_null(wf_err_set(NULL, "$", "no err"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_money_every_operator_in_cents),
		cmocka_unit_test(test_money_decimal_values_compare_exactly),
		cmocka_unit_test(test_money_values_refused),
		cmocka_unit_test(test_money_facts_missing_or_malformed_are_false),
		cmocka_unit_test(test_integer_every_operator),
		cmocka_unit_test(test_string_every_operator_case_sensitive),
		cmocka_unit_test(test_string_values_refused),
		cmocka_unit_test(test_list_of_100_values_allowed_101_refused),
		cmocka_unit_test(test_boolean_every_operator),
		cmocka_unit_test(test_string_list_every_operator),
		cmocka_unit_test(test_missing_fact_makes_every_comparison_false_and_not_true),
		cmocka_unit_test(test_all_any_not_combine),
		cmocka_unit_test(test_nesting_8_levels_allowed_9_refused),
		cmocka_unit_test(test_64_nodes_allowed_65_refused),
		cmocka_unit_test(test_all_any_take_1_to_16_conditions),
		cmocka_unit_test(test_parse_errors_name_their_path),
		cmocka_unit_test(test_err_set_copies_path_and_formats_message),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
