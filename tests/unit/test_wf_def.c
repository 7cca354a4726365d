/*
 * Unit tests for wf_def: the action table, the three built-in templates,
 * lookups and conditional alternatives, every kind of validation error
 * (with its exact path), the limits, reference counting, and the rules.
 *
 * JSON in these tests is written with ' for " so it reads as JSON.
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/order.h"
#include "orderflow/util.h"
#include "orderflow/ship.h"
#include "orderflow/wf_def.h"

#include "unit.h"

/* A state "new" that validates into "completed" or "failed", and those two. */
#define NEW_OK "'new':{'entry':['validate_order'],'on':{'validate':{'target':'completed'}," \
	"'reject':{'target':'failed'}}}"
#define ENDS "'completed':{},'failed':{}"
/* A comparison that holds for big orders. */
#define BIG "{'field':'total_amount','op':'ge','value':100}"

/* One document that must be refused, where and why. */
struct refusal {
	const char	*text;		/* the definition, JSON with ' for " */
	const char	*path;		/* the path of the error */
	const char	*msg;		/* part of its message */
};

/* JSON written with ' for " (unit.h). */
static json_t *
load(const char *text)
{
	return unit_json(text, 0);
}

/* doc (borrowed) parsed as workflow "test" version 3; it must validate. */
static struct wf_def *
parse_doc(json_t *doc)
{
	struct wf_err err;
	struct wf_def *d = wf_def_parse(doc, "test", 3, &err);

	if (d == NULL)
		fail_msg("definition refused at %s: %s", err.path, err.msg);
	return d;
}

/* The definition text, which must validate. */
static struct wf_def *
def_ok(const char *text)
{
	json_t *doc = load(text);
	struct wf_def *d = parse_doc(doc);

	json_decref(doc);
	return d;
}

/* doc (borrowed) is refused at path with a message containing msg. */
static void
doc_refused(json_t *doc, const char *path, const char *msg)
{
	struct wf_err err;
	struct wf_def *d = wf_def_parse(doc, "test", 1, &err);
	char *text;

	if (d != NULL) {
		wf_def_unref(d);
		text = json_dumps(doc, JSON_COMPACT);
		fail_msg("definition accepted: %s", text);
	}
	if (strcmp(err.path, path) != 0 || strstr(err.msg, msg) == NULL) {
		text = json_dumps(doc, JSON_COMPACT);
		fail_msg("%s\n  got %s \"%s\"\n  expected %s \"...%s...\"", text, err.path,
		    err.msg, path, msg);
	}
}

/* Every case of cases[n] is refused as it says. */
static void
check_refusals(const struct refusal *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_t *doc = load(cases[i].text);

		doc_refused(doc, cases[i].path, cases[i].msg);
		json_decref(doc);
	}
}

/* State name of d has these statuses, entry ("a b") and transitions ("t>s ..."). */
static void
expect_state(const struct wf_def *d, const char *name, int ws, int os, const char *entry,
    const char *on)
{
	int s = wf_def_state(d, name);
	const struct wf_state *st;
	char got[512] = "";

	if (s < 0)
		fail_msg("%s has no state %s", d->name, name);
	st = &d->states[s];
	assert_int_equal(st->workflow_status, ws);
	assert_int_equal(st->order_status, os);
	for (int i = 0; i < st->nentry; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
		    wf_action_info(st->entry[i])->name);
	assert_string_equal(got, entry);
	got[0] = '\0';
	for (int i = 0; i < st->ntrans; i++) {
		const struct wf_transition *t = &st->trans[i];

		assert_int_equal(t->nalts, 1);
		assert_null(t->alts[0].cond);
		assert_int_equal(t->alts[0].nactions, 0);
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s>%s", i ? " " : "",
		    t->trigger, d->states[t->alts[0].target].name);
	}
	assert_string_equal(got, on);
	assert_int_equal(st->terminal, on[0] == '\0');
	assert_int_equal(st->failure, on[0] == '\0' && ws == ORDER_WF_FAILED);
}

/* A built-in: its name, version 0, flagged built-in, starting at "new". */
static const struct wf_def *
builtin(const char *name, int nstates)
{
	const struct wf_def *d = wf_def_builtin(name);

	assert_non_null(d);
	assert_string_equal(d->name, name);
	assert_int_equal(d->version, 0);
	assert_true(d->builtin);
	assert_int_equal(d->nstates, nstates);
	assert_int_equal(d->initial, wf_def_state(d, "new"));
	assert_true(json_is_object(json_object_get(d->doc, "states")));
	return d;
}

/* Thread body: look a built-in up, maybe the very first time. */
static void *
builtin_thread(void *arg)
{
	(void)arg;
	return (void *)wf_def_builtin("manual_review");
}

static void
test_builtins_made_once_under_concurrent_first_use(void **state)
{
	pthread_t th[8];
	void *got[8];

	(void)state;
	for (size_t i = 0; i < NELEM(th); i++)
		assert_int_equal(pthread_create(&th[i], NULL, builtin_thread, NULL), 0);
	for (size_t i = 0; i < NELEM(th); i++) {
		assert_int_equal(pthread_join(th[i], &got[i]), 0);
		assert_non_null(got[i]);
		assert_ptr_equal(got[i], got[0]);
	}
	assert_ptr_equal(wf_def_builtin("manual_review"), got[0]);
}

static void
test_action_table(void **state)
{
	const struct wf_action_info *v = wf_action_info(WF_A_VALIDATE_ORDER);
	const struct wf_action_info *r = wf_action_info(WF_A_RESERVE_STOCK);
	const struct wf_action_info *ap = wf_action_info(WF_A_AWAIT_APPROVAL);

	(void)state;
	assert_string_equal(v->name, "validate_order");
	assert_string_equal(v->emits[0], "validate");
	assert_string_equal(v->emits[1], "reject");
	assert_null(v->emits[2]);
	assert_string_equal(v->wait_kind, "tiktok_hold");
	assert_string_equal(v->skip_trigger, "validate");
	assert_int_equal(v->compensation, -1);
	assert_int_equal(v->policy, WF_POLICY_WORKFLOW);
	assert_null(r->emits[0]);
	assert_string_equal(r->wait_kind, "stock");
	assert_null(r->skip_trigger);
	assert_int_equal(r->compensation, WF_A_RELEASE_STOCK);
	assert_int_equal(r->policy, WF_POLICY_INVENTORY);
	assert_null(wf_action_info(WF_A_RELEASE_STOCK)->wait_kind);
	assert_int_equal(wf_action_info(WF_A_CONSUME_STOCK)->policy, WF_POLICY_INVENTORY);
	assert_string_equal(ap->emits[1], "reject");
	assert_string_equal(ap->skip_trigger, "approve");
	assert_string_equal(wf_action_info(WF_A_AWAIT_SHIPMENT)->wait_kind, "shipment");
	assert_string_equal(wf_action_info(WF_A_AWAIT_DELIVERY)->skip_trigger, "deliver");
	/* The shipping steps run outside the database, each as its ship.h step. */
	assert_int_equal(wf_action_info(WF_A_CREATE_SHIPPING_LABEL)->call, SHIP_LABEL);
	assert_int_equal(wf_action_info(WF_A_CREATE_SHIPPING_LABEL)->compensation, WF_A_VOID_LABEL);
	assert_int_equal(wf_action_info(WF_A_SHIP_PACKAGE)->call, SHIP_PACKAGES);
	assert_int_equal(wf_action_info(WF_A_SHIP_PACKAGE)->compensation, -1);
	assert_int_equal(wf_action_info(WF_A_UPDATE_TIKTOK_STATUS)->call, SHIP_CONFIRM);
	assert_int_equal(wf_action_info(WF_A_VOID_LABEL)->call, SHIP_VOID);
	assert_int_equal(wf_action_info(WF_A_VOID_LABEL)->policy, WF_POLICY_SHIPPING);
	assert_int_equal(wf_action_info(WF_A_RESERVE_STOCK)->call, -1);
	for (int a = 0; a < WF_A_COUNT; a++) {
		assert_int_equal(wf_action_find(wf_action_info(a)->name), a);
		assert_non_null(wf_action_info(a)->doc);
	}
	assert_null(wf_action_info(-1));
	assert_null(wf_action_info(WF_A_COUNT));
	assert_int_equal(wf_action_find("ship_it"), -1);
	assert_int_equal(wf_action_find(NULL), -1);
}

static void
test_name_ok_is_lowercase_identifier_of_1_to_64(void **state)
{
	char name[70];

	(void)state;
	assert_true(wf_def_name_ok("new"));
	assert_true(wf_def_name_ok("a"));
	assert_true(wf_def_name_ok("ready_to_ship_2"));
	memset(name, 'a', 64);
	name[64] = '\0';
	assert_true(wf_def_name_ok(name));
	strcat(name, "a");
	assert_false(wf_def_name_ok(name));
	assert_false(wf_def_name_ok(""));
	assert_false(wf_def_name_ok(NULL));
	assert_false(wf_def_name_ok("New"));
	assert_false(wf_def_name_ok("2nd"));
	assert_false(wf_def_name_ok("_x"));
	assert_false(wf_def_name_ok("a-b"));
	assert_false(wf_def_name_ok("a b"));
}

static void
test_builtin_names(void **state)
{
	const char *const *names = wf_def_builtin_names();

	(void)state;
	assert_string_equal(names[0], "standard_fulfillment");
	assert_string_equal(names[1], "manual_review");
	assert_string_equal(names[2], "digital");
	assert_null(names[3]);
	assert_null(wf_def_builtin("custom"));
	assert_null(wf_def_builtin(NULL));
}

static void
test_builtin_standard_fulfillment(void **state)
{
	const struct wf_def *d = builtin("standard_fulfillment", 7);

	(void)state;
	expect_state(d, "new", ORDER_WF_NEW, -1, "validate_order",
	    "validate>validated reject>failed");
	expect_state(d, "validated", ORDER_WF_VALIDATED, -1, "reserve_stock",
	    "done>inventory_reserved");
	expect_state(d, "inventory_reserved", ORDER_WF_INVENTORY_RESERVED, ORDER_PROCESSING, "",
	    "done>ready_to_ship");
	expect_state(d, "ready_to_ship", ORDER_WF_READY_TO_SHIP, -1,
	    "create_shipping_label ship_package update_tiktok_status", "done>shipped");
	expect_state(d, "shipped", ORDER_WF_SHIPPED, ORDER_SHIPPED, "consume_stock await_delivery",
	    "deliver>completed");
	expect_state(d, "completed", ORDER_WF_COMPLETED, ORDER_DELIVERED, "", "");
	expect_state(d, "failed", ORDER_WF_FAILED, -1, "", "");
}

static void
test_builtin_manual_review(void **state)
{
	const struct wf_def *d = builtin("manual_review", 9);

	(void)state;
	expect_state(d, "new", ORDER_WF_NEW, -1, "validate_order",
	    "validate>awaiting_approval reject>failed");
	expect_state(d, "awaiting_approval", ORDER_WF_VALIDATED, -1, "await_approval",
	    "approve>validated reject>rejected");
	expect_state(d, "validated", ORDER_WF_VALIDATED, -1, "reserve_stock",
	    "done>inventory_reserved");
	expect_state(d, "inventory_reserved", ORDER_WF_INVENTORY_RESERVED, ORDER_PROCESSING, "",
	    "done>ready_to_ship");
	expect_state(d, "ready_to_ship", ORDER_WF_READY_TO_SHIP, -1,
	    "create_shipping_label ship_package update_tiktok_status", "done>shipped");
	expect_state(d, "shipped", ORDER_WF_SHIPPED, ORDER_SHIPPED, "consume_stock await_delivery",
	    "deliver>completed");
	expect_state(d, "completed", ORDER_WF_COMPLETED, ORDER_DELIVERED, "", "");
	expect_state(d, "rejected", ORDER_WF_FAILED, -1, "", "");
	expect_state(d, "failed", ORDER_WF_FAILED, -1, "", "");
}

static void
test_builtin_digital(void **state)
{
	const struct wf_def *d = builtin("digital", 3);

	(void)state;
	expect_state(d, "new", ORDER_WF_NEW, -1, "validate_order",
	    "validate>completed reject>failed");
	expect_state(d, "completed", ORDER_WF_COMPLETED, -1, "", "");
	expect_state(d, "failed", ORDER_WF_FAILED, -1, "", "");
}

static void
test_builtin_documents_validate_again_as_given(void **state)
{
	const char *const *names = wf_def_builtin_names();

	(void)state;
	/* What GET shows for a template parses to the same machine. */
	for (int i = 0; names[i] != NULL; i++) {
		struct wf_def *d = parse_doc(wf_def_builtin(names[i])->doc);

		assert_int_equal(d->nstates, wf_def_builtin(names[i])->nstates);
		assert_false(d->builtin);
		wf_def_unref(d);
	}
}

static void
test_parse_records_name_version_initial_and_a_copy(void **state)
{
	json_t *doc = load("{'initial':'start','description':'two steps','states':{"
	    "'done_ok':{'workflow_status':'completed'},"
	    "'start':{'workflow_status':'new','order_status':'confirmed',"
	    "'on':{'done':{'target':'done_ok'}}}}}");
	struct wf_def *d = parse_doc(doc);

	(void)state;
	assert_string_equal(d->name, "test");
	assert_int_equal(d->version, 3);
	assert_false(d->builtin);
	assert_int_equal(d->nstates, 2);
	assert_int_equal(d->initial, 1);
	assert_int_equal(d->states[1].order_status, ORDER_CONFIRMED);
	assert_int_equal(wf_def_state(d, "done_ok"), 0);
	assert_int_equal(wf_def_state(d, "nope"), -1);
	/* The definition keeps its own copy of the document. */
	assert_ptr_not_equal(d->doc, doc);
	json_object_set_new(doc, "description", json_string("changed"));
	assert_string_equal(json_string_value(json_object_get(d->doc, "description")),
	    "two steps");
	json_decref(doc);
	wf_def_unref(d);
}

static void
test_on_and_choose_take_the_first_alternative_that_holds(void **state)
{
	struct wf_def *d = def_ok("{'states':{'new':{'entry':['validate_order'],'on':{"
	    "'validate':[{'target':'review','if':" BIG "},"
	    "{'target':'completed','if':{'field':'region','op':'eq','value':'US'},"
	    "'actions':['consume_stock']},"
	    "{'target':'completed','actions':['release_stock','consume_stock']}],"
	    "'reject':[{'target':'failed','if':" BIG "}]}},"
	    "'review':{'workflow_status':'validated','entry':['await_approval'],'on':{"
	    "'approve':{'target':'completed'},'reject':{'target':'failed'}}}," ENDS "}}");
	json_t *big = load("{'total_amount':'100.00','region':'US'}");
	json_t *us = load("{'total_amount':'99.99','region':'US'}"), *none = load("{}");
	const struct wf_transition *t = wf_def_on(d, wf_def_state(d, "new"), "validate");

	(void)state;
	assert_non_null(t);
	assert_string_equal(t->trigger, "validate");
	assert_int_equal(t->nalts, 3);
	assert_ptr_equal(wf_def_choose(t, big), &t->alts[0]);
	assert_int_equal(wf_def_choose(t, big)->target, wf_def_state(d, "review"));
	assert_ptr_equal(wf_def_choose(t, us), &t->alts[1]);
	assert_int_equal(t->alts[1].nactions, 1);
	assert_int_equal(t->alts[1].actions[0], WF_A_CONSUME_STOCK);
	assert_ptr_equal(wf_def_choose(t, none), &t->alts[2]);
	assert_int_equal(t->alts[2].nactions, 2);
	assert_int_equal(t->alts[2].actions[0], WF_A_RELEASE_STOCK);
	/* Only conditional alternatives, none holds: nothing is taken. */
	t = wf_def_on(d, wf_def_state(d, "new"), "reject");
	assert_ptr_equal(wf_def_choose(t, big), &t->alts[0]);
	assert_null(wf_def_choose(t, us));
	assert_null(wf_def_choose(NULL, us));
	assert_null(wf_def_on(d, wf_def_state(d, "new"), "ship"));
	assert_null(wf_def_on(d, wf_def_state(d, "new"), NULL));
	assert_null(wf_def_on(d, -1, "validate"));
	assert_null(wf_def_on(d, d->nstates, "validate"));
	json_decref(big);
	json_decref(us);
	json_decref(none);
	wf_def_unref(d);
}

static void
test_refcount_frees_at_zero(void **state)
{
	struct wf_def *d = def_ok("{'states':{" NEW_OK "," ENDS "}}");

	(void)state;
	assert_int_equal(atomic_load(&d->refs), 1);
	assert_ptr_equal(wf_def_ref(d), d);
	assert_ptr_equal(wf_def_ref(d), d);
	assert_int_equal(atomic_load(&d->refs), 3);
	wf_def_unref(d);
	wf_def_unref(d);
	assert_int_equal(atomic_load(&d->refs), 1);
	/* The last unref frees everything: ASan reports a leak or a double free. */
	wf_def_unref(d);
	assert_null(wf_def_ref(NULL));
	wf_def_unref(NULL);
}

static void
test_accepted_corner_cases(void **state)
{
	static const char *const ok[] = {
		/* "done" where the last entry action emits: never fired, but allowed. */
		"{'states':{'new':{'entry':['validate_order'],'on':{'validate':{'target':"
		    "'completed'},'reject':{'target':'failed'},'done':{'target':'failed'}}},"
		    ENDS "}}",
		/* A terminal state may run actions that neither wait nor emit. */
		"{'states':{" NEW_OK ",'completed':{'entry':['consume_stock']},"
		    "'failed':{'entry':['release_stock']}}}",
		/* An explicit workflow_status wins over the state's name. */
		"{'states':{'new':{'on':{'done':{'target':'failed'}}},"
		    "'failed':{'workflow_status':'completed'}}}",
		/* "on": {} is terminal; descriptions anywhere. */
		"{'description':'d','states':{'new':{'description':'s','on':{'done':"
		    "{'target':'end'}}},'end':{'workflow_status':'failed','on':{}}}}",
		/* One alternative as a list, with and without "if". */
		"{'states':{'new':{'on':{'done':[{'target':'completed'}]}},'completed':{}}}",
	};
	struct wf_def *d;

	(void)state;
	for (size_t i = 0; i < NELEM(ok); i++)
		wf_def_unref(def_ok(ok[i]));
	/* The explicit status above: terminal and not a failure. */
	d = def_ok(ok[2]);
	assert_true(d->states[1].terminal);
	assert_false(d->states[1].failure);
	assert_int_equal(d->states[1].workflow_status, ORDER_WF_COMPLETED);
	wf_def_unref(d);
}

static void
test_refuses_unknown_fields_and_non_objects(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{" NEW_OK "," ENDS "},'name':'x'}", "$.name", "unknown field" },
		{ "{'states':{'new':{'exit':[]}," ENDS "}}", "$.states.new.exit",
		    "unknown field" },
		{ "{'states':{'new':{'x y':1}," ENDS "}}", "$.states.new[\"x y\"]",
		    "unknown field" },
		{ "{'states':{'new':{'on':{'done':{'target':'completed','when':{}}}}," ENDS "}}",
		    "$.states.new.on.done.when", "unknown field" },
		{ "{'states':{'new':{'on':{'done':[{'target':'completed','if':" BIG ",'x':1},"
		    "{'target':'failed'}]}}," ENDS "}}", "$.states.new.on.done[0].x",
		    "unknown field" },
		{ "[]", "$", "a workflow definition must be an object" },
		{ "{}", "$", "missing \"states\"" },
		{ "{'states':[]}", "$.states", "must be an object" },
		{ "{'states':{'new':5," ENDS "}}", "$.states.new", "a state must be an object" },
		{ "{'states':{'new':{'on':[]}," ENDS "}}", "$.states.new.on", "must be an object" },
		{ "{'states':{'new':{'on':{'done':'completed'}}," ENDS "}}",
		    "$.states.new.on.done", "a transition must be an object" },
		{ "{'states':{'new':{'on':{'done':[5]}}," ENDS "}}", "$.states.new.on.done[0]",
		    "a transition must be an object" },
		{ "{'states':{'new':{'on':{'done':{'target':'completed','if':5}}}," ENDS "}}",
		    "$.states.new.on.done.if", "a condition must be an object" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_unknown_actions(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'entry':['validate_orders'],'on':{'done':{'target':"
		    "'completed'}}}," ENDS "}}", "$.states.new.entry[0]",
		    "unknown action \"validate_orders\"" },
		{ "{'states':{'new':{'entry':[5]}," ENDS "}}", "$.states.new.entry[0]",
		    "must be an action name" },
		{ "{'states':{'new':{'entry':'validate_order'}," ENDS "}}", "$.states.new.entry",
		    "must be an array of action names" },
		{ "{'states':{'new':{'on':{'done':{'target':'completed','actions':"
		    "['release_stock','ship_it']}}}," ENDS "}}",
		    "$.states.new.on.done.actions[1]", "unknown action \"ship_it\"" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_unknown_condition_field_or_operator(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'entry':['validate_order'],'on':{'validate':["
		    "{'target':'completed','if':" BIG "},{'target':'failed','if':"
		    "{'field':'colour','op':'eq','value':'red'}}],'reject':{'target':'failed'}}},"
		    ENDS "}}", "$.states.new.on.validate[1].if.field",
		    "unknown field \"colour\"" },
		{ "{'states':{'new':{'on':{'done':{'target':'completed','if':"
		    "{'field':'region','op':'like','value':'US'}}}}," ENDS "}}",
		    "$.states.new.on.done.if.op", "unknown operator \"like\"" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_unknown_states(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'entry':['validate_order'],'on':{'validate':{'target':"
		    "'shipped'},'reject':{'target':'failed'}}}," ENDS "}}",
		    "$.states.new.on.validate.target", "unknown state \"shipped\"" },
		{ "{'states':{'new':{'on':{'done':{'target':5}}}," ENDS "}}",
		    "$.states.new.on.done.target", "must be a state name" },
		{ "{'states':{'new':{'on':{'done':{'actions':[]}}}," ENDS "}}",
		    "$.states.new.on.done", "missing \"target\"" },
		{ "{'initial':'start','states':{" NEW_OK "," ENDS "}}", "$.initial",
		    "unknown state \"start\"" },
		{ "{'initial':5,'states':{" NEW_OK "," ENDS "}}", "$.initial",
		    "must be a state name" },
		{ "{'states':{'begin':{'workflow_status':'new','on':{'done':{'target':"
		    "'completed'}}}," ENDS "}}", "$.initial",
		    "unknown state \"new\" (the initial state when \"initial\" is absent)" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_triggers_that_do_not_match_the_entry(void **state)
{
	static const struct refusal cases[] = {
		/* A trigger no entry action emits. */
		{ "{'states':{'new':{'entry':['validate_order'],'on':{'validate':{'target':"
		    "'completed'},'reject':{'target':'failed'},'ship':{'target':'completed'}}},"
		    ENDS "}}", "$.states.new.on.ship",
		    "no entry action of this state emits \"ship\"" },
		{ "{'states':{'new':{'on':{'done':{'target':'completed'},'approve':{'target':"
		    "'failed'}}}," ENDS "}}", "$.states.new.on.approve",
		    "no entry action of this state emits \"approve\"" },
		/* A trigger the entry emits, without a transition. */
		{ "{'states':{'new':{'entry':['validate_order'],'on':{'validate':{'target':"
		    "'completed'}}}," ENDS "}}", "$.states.new.on",
		    "no transition for \"reject\", which validate_order emits" },
		/* Entry actions that all continue, and no "done". */
		{ "{'states':{'new':{'entry':['reserve_stock'],'on':{'ship':{'target':"
		    "'completed'}}}," ENDS "}}", "$.states.new.on",
		    "no transition for \"done\"" },
		{ "{'states':{'new':{'on':{'validate':{'target':'completed'}}}," ENDS "}}",
		    "$.states.new.on", "no transition for \"done\"" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_emitting_action_before_the_last_entry(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'entry':['validate_order','reserve_stock'],'on':{"
		    "'done':{'target':'completed'}}}," ENDS "}}", "$.states.new.entry[0]",
		    "validate_order emits triggers, so it must be the last entry action" },
		{ "{'states':{'new':{'entry':['release_stock','await_shipment','await_delivery'],"
		    "'on':{'deliver':{'target':'completed'}}}," ENDS "}}",
		    "$.states.new.entry[1]", "await_shipment emits triggers" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_alternative_after_one_without_if(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'on':{'done':[{'target':'completed'},{'target':'failed',"
		    "'if':" BIG "}]}}," ENDS "}}", "$.states.new.on.done[1]",
		    "the alternative before it has no \"if\"" },
		{ "{'states':{'new':{'on':{'done':[{'target':'completed','if':" BIG "},"
		    "{'target':'failed'},{'target':'completed'}]}}," ENDS "}}",
		    "$.states.new.on.done[2]", "has no \"if\"" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_bad_graphs(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{" NEW_OK "," ENDS ",'orphan':{'workflow_status':'completed'}}}",
		    "$.states.orphan", "unreachable from the initial state \"new\"" },
		{ "{'states':{'new':{'entry':['validate_order'],'on':{'validate':{'target':"
		    "'loop'},'reject':{'target':'failed'}}},'loop':{'workflow_status':'validated',"
		    "'on':{'done':{'target':'loop'}}},'failed':{}}}", "$.states.loop",
		    "no terminal state can be reached from here" },
		{ "{'states':{'new':{'entry':['validate_order'],'on':{'validate':{'target':"
		    "'new'},'reject':{'target':'new'}}}}}", "$.states",
		    "no terminal state (one without transitions)" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_terminal_state_not_completed_or_failed(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'on':{'done':{'target':'shipped'}}},'shipped':{}}}",
		    "$.states.shipped", "must have workflow_status completed or failed, "
		    "not shipped" },
		{ "{'states':{'new':{'on':{'done':{'target':'end'}}},'end':{'workflow_status':"
		    "'validated','on':{}}}}", "$.states.end.workflow_status",
		    "completed or failed, not validated" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_waiting_or_triggering_actions_where_they_cannot_run(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'on':{'done':{'target':'completed','actions':"
		    "['reserve_stock']}}}," ENDS "}}", "$.states.new.on.done.actions[0]",
		    "reserve_stock waits, so it cannot be a transition action" },
		{ "{'states':{'new':{'on':{'done':[{'target':'completed','if':" BIG ","
		    "'actions':['release_stock','await_approval']},{'target':'failed'}]}}," ENDS
		    "}}", "$.states.new.on.done[0].actions[1]",
		    "await_approval waits, so it cannot be a transition action" },
		{ "{'states':{" NEW_OK ",'completed':{'entry':['await_delivery']},'failed':{}}}",
		    "$.states.completed.entry[0]",
		    "await_delivery waits, so it cannot be an entry action of a terminal state" },
		{ "{'states':{" NEW_OK ",'completed':{},'failed':{'entry':['release_stock',"
		    "'validate_order']}}}", "$.states.failed.entry[1]",
		    "validate_order waits, so it cannot be an entry action of a terminal state" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_bad_statuses(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'new':{'workflow_status':'done','on':{'done':{'target':"
		    "'completed'}}}," ENDS "}}", "$.states.new.workflow_status",
		    "unknown workflow status \"done\"" },
		{ "{'states':{'new':{'workflow_status':5}," ENDS "}}",
		    "$.states.new.workflow_status", "must be a string" },
		{ "{'states':{'new':{'order_status':'paid'}," ENDS "}}",
		    "$.states.new.order_status", "unknown order status \"paid\"" },
		{ "{'states':{'new':{'on':{'done':{'target':'review'}}},'review':{'on':{'done':"
		    "{'target':'completed'}}}," ENDS "}}", "$.states.review",
		    "missing \"workflow_status\"" },
	};

	(void)state;
	check_refusals(cases, NELEM(cases));
}

static void
test_refuses_bad_names(void **state)
{
	static const struct refusal cases[] = {
		{ "{'states':{'New':{}}}", "$.states.New", "a state name must match" },
		{ "{'states':{'a-b':{}}}", "$.states[\"a-b\"]", "a state name must match" },
		{ "{'states':{'new':{'on':{'Done':{'target':'completed'}}}," ENDS "}}",
		    "$.states.new.on.Done", "a trigger name must match" },
	};
	char text[512], name[70];
	struct wf_err err;
	json_t *doc;

	(void)state;
	memset(name, 'z', 65);
	name[65] = '\0';
	snprintf(text, sizeof(text), "{'states':{" NEW_OK "," ENDS ",'%s':{}}}", name);
	doc = load(text);
	snprintf(text, sizeof(text), "$.states.%s", name);
	doc_refused(doc, text, "a state name must match [a-z][a-z0-9_]{0,63}");
	json_decref(doc);
	/* 64 bytes are fine. */
	name[64] = '\0';
	snprintf(text, sizeof(text), "{'states':{'new':{'on':{'done':{'target':'%s'}}},"
	    "'%s':{'workflow_status':'completed'}}}", name, name);
	wf_def_unref(def_ok(text));
	check_refusals(cases, NELEM(cases));
	/* The workflow's own name. */
	doc = load("{'states':{" NEW_OK "," ENDS "}}");
	assert_null(wf_def_parse(doc, "Bad Name", 1, &err));
	assert_string_equal(err.path, "$");
	assert_non_null(strstr(err.msg, "workflow name"));
	assert_null(wf_def_parse(doc, NULL, 1, &err));
	json_decref(doc);
}

/* {"states": {"s0" -> "s1" -> ... -> "s<n-1>" (completed)}}, started at "s0". */
static json_t *
chain(int n)
{
	json_t *states = json_object();
	char name[16], next[16];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(next, sizeof(next), "s%d", i + 1);
		json_object_set_new(states, name, i < n - 1 ?
		    json_pack("{s:s,s:{s:{s:s}}}", "workflow_status", "validated", "on", "done",
		    "target", next) : json_pack("{s:s}", "workflow_status", "completed"));
	}
	return json_pack("{s:s,s:o}", "initial", "s0", "states", states);
}

/* The state "new" of doc (borrowed). */
static json_t *
new_state(json_t *doc)
{
	return json_object_get(json_object_get(doc, "states"), "new");
}

/* Append n copies of the string s to array a. */
static void
append_n(json_t *a, const char *s, int n)
{
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_string(s));
}

static void
test_state_limit_64(void **state)
{
	json_t *doc = chain(64);
	struct wf_def *d = parse_doc(doc);

	(void)state;
	assert_int_equal(d->nstates, 64);
	wf_def_unref(d);
	json_decref(doc);
	doc = chain(65);
	doc_refused(doc, "$.states", "a definition has 1 to 64 states");
	json_decref(doc);
	doc = load("{'states':{}}");
	doc_refused(doc, "$.states", "1 to 64 states");
	json_decref(doc);
}

static void
test_action_limits_16(void **state)
{
	json_t *doc = load("{'states':{'new':{'entry':[],'on':{'done':{'target':'completed',"
	    "'actions':[]}}},'completed':{}}}");
	json_t *entry = json_object_get(new_state(doc), "entry");
	json_t *acts = json_object_get(json_object_get(json_object_get(new_state(doc), "on"),
	    "done"), "actions");

	(void)state;
	append_n(entry, "release_stock", 16);
	append_n(acts, "consume_stock", 16);
	wf_def_unref(parse_doc(doc));
	append_n(acts, "consume_stock", 1);
	doc_refused(doc, "$.states.new.on.done.actions", "at most 16 actions");
	json_array_remove(acts, 0);
	append_n(entry, "release_stock", 1);
	doc_refused(doc, "$.states.new.entry", "at most 16 actions");
	json_decref(doc);
}

static void
test_trigger_limit_16(void **state)
{
	json_t *doc = load("{'states':{'new':{'on':{}}," ENDS "}}");
	json_t *on = json_object_get(new_state(doc), "on");
	char trigger[16];

	(void)state;
	for (int i = 0; i < 17; i++) {
		snprintf(trigger, sizeof(trigger), "t%d", i);
		json_object_set_new(on, trigger, json_pack("{s:s}", "target", "completed"));
	}
	doc_refused(doc, "$.states.new.on", "at most 16 transitions");
	json_decref(doc);
}

static void
test_alternative_limit_1_to_8(void **state)
{
	json_t *doc = load("{'states':{'new':{'on':{'done':[]}}," ENDS "}}");
	json_t *alts = json_object_get(json_object_get(new_state(doc), "on"), "done");
	json_t *alt = load("{'target':'completed','if':" BIG "}");

	(void)state;
	doc_refused(doc, "$.states.new.on.done", "a transition has 1 to 8 alternatives");
	for (int i = 0; i < 7; i++)
		json_array_append(alts, alt);
	json_array_append_new(alts, load("{'target':'failed'}"));
	wf_def_unref(parse_doc(doc));
	json_array_insert(alts, 0, alt);
	doc_refused(doc, "$.states.new.on.done", "1 to 8 alternatives");
	json_decref(alt);
	json_decref(doc);
}

static void
test_description_limit_500_bytes(void **state)
{
	json_t *doc = load("{'states':{" NEW_OK "," ENDS "}}");
	char text[502];

	(void)state;
	memset(text, 'd', 500);
	text[500] = '\0';
	json_object_set_new(doc, "description", json_string(text));
	json_object_set_new(new_state(doc), "description", json_string(text));
	wf_def_unref(parse_doc(doc));
	strcat(text, "d");
	json_object_set_new(new_state(doc), "description", json_string(text));
	doc_refused(doc, "$.states.new.description", "at most 500 bytes");
	json_object_set_new(doc, "description", json_string(text));
	doc_refused(doc, "$.description", "at most 500 bytes");
	json_object_set_new(doc, "description", json_integer(1));
	doc_refused(doc, "$.description", "must be a string");
	json_decref(doc);
}

/* The rules text parsed with known; it must validate. */
static struct wf_rules *
rules_ok(const char *text, const char *const *known)
{
	json_t *doc = load(text);
	struct wf_err err;
	struct wf_rules *r = wf_rules_parse(doc, known, &err);

	json_decref(doc);
	if (r == NULL)
		fail_msg("rules refused at %s: %s", err.path, err.msg);
	return r;
}

/* The workflow r picks for facts (JSON text). */
static const char *
pick(const struct wf_rules *r, const char *facts)
{
	json_t *f = load(facts);
	const char *w = wf_rules_choose(r, f);

	json_decref(f);
	return w;
}

static void
test_rules_highest_priority_that_holds_wins(void **state)
{
	static const char *const known[] = { "my_flow", NULL };
	struct wf_rules *r = rules_ok("{'rules':["
	    "{'name':'low','priority':1,'workflow':'digital'},"
	    "{'name':'high','priority':10,'if':" BIG ",'workflow':'manual_review'},"
	    "{'name':'mid','priority':5,'if':{'field':'region','op':'eq','value':'US'},"
	    "'workflow':'my_flow'}]}", known);

	(void)state;
	assert_int_equal(r->nrules, 3);
	assert_string_equal(r->rules[0].name, "high");
	assert_string_equal(r->rules[1].name, "mid");
	assert_string_equal(r->rules[2].name, "low");
	assert_int_equal(r->rules[0].priority, 10);
	assert_null(r->rules[2].cond);
	assert_string_equal(pick(r, "{'total_amount':'150','region':'US'}"), "manual_review");
	assert_string_equal(pick(r, "{'total_amount':'50','region':'US'}"), "my_flow");
	/* A rule without "if" always holds. */
	assert_string_equal(pick(r, "{'total_amount':'50','region':'CA'}"), "digital");
	wf_rules_free(r);
}

static void
test_rules_ties_keep_document_order(void **state)
{
	struct wf_rules *r = rules_ok("{'rules':["
	    "{'name':'a','priority':-5,'workflow':'standard_fulfillment'},"
	    "{'name':'b','if':{'field':'region','op':'eq','value':'US'},'workflow':'digital'},"
	    "{'name':'c','priority':0,'workflow':'manual_review'},"
	    "{'name':'d','priority':0,'workflow':'digital'}]}", NULL);

	(void)state;
	assert_string_equal(r->rules[0].name, "b");
	assert_string_equal(r->rules[1].name, "c");
	assert_string_equal(r->rules[2].name, "d");
	assert_string_equal(r->rules[3].name, "a");
	assert_int_equal(r->rules[0].priority, 0);
	assert_string_equal(pick(r, "{'region':'US'}"), "digital");
	assert_string_equal(pick(r, "{'region':'CA'}"), "manual_review");
	wf_rules_free(r);
}

static void
test_rules_no_match_gives_the_default(void **state)
{
	static const char *const known[] = { "flow_a", "flow_b", NULL };
	struct wf_rules *r = rules_ok("{'rules':[{'name':'big','if':" BIG ",'workflow':"
	    "'flow_b'}]}", known);

	(void)state;
	assert_string_equal(r->fallback, "standard_fulfillment");
	assert_string_equal(pick(r, "{'total_amount':'1'}"), "standard_fulfillment");
	assert_string_equal(pick(r, "{}"), "standard_fulfillment");
	assert_string_equal(pick(r, "{'total_amount':'100'}"), "flow_b");
	wf_rules_free(r);
	r = rules_ok("{'default':'flow_a'}", known);
	assert_int_equal(r->nrules, 0);
	assert_string_equal(pick(r, "{}"), "flow_a");
	wf_rules_free(r);
	r = rules_ok("{'rules':[],'default':'digital'}", NULL);
	assert_string_equal(pick(r, "{}"), "digital");
	wf_rules_free(r);
	assert_string_equal(wf_rules_choose(NULL, NULL), "standard_fulfillment");
}

/* The rules text is refused (known: "my_flow") at path with a message containing msg. */
static void
rules_refused(const char *text, const char *path, const char *msg)
{
	static const char *const known[] = { "my_flow", NULL };
	json_t *doc = load(text);
	struct wf_err err;
	struct wf_rules *r = wf_rules_parse(doc, known, &err);

	json_decref(doc);
	if (r != NULL) {
		wf_rules_free(r);
		fail_msg("rules accepted: %s", text);
	}
	if (strcmp(err.path, path) != 0 || strstr(err.msg, msg) == NULL)
		fail_msg("%s\n  got %s \"%s\"\n  expected %s \"...%s...\"", text, err.path,
		    err.msg, path, msg);
}

static void
test_rules_unknown_workflow_refused_known_accepted(void **state)
{
	static const char *const known[] = { "my_flow", NULL };

	(void)state;
	rules_refused("{'rules':[{'name':'a','workflow':'digital'},{'name':'b','workflow':"
	    "'other_flow'}]}", "$.rules[1].workflow", "unknown workflow \"other_flow\"");
	rules_refused("{'rules':[{'name':'a','workflow':'Digital'}]}", "$.rules[0].workflow",
	    "unknown workflow");
	rules_refused("{'rules':[{'name':'a','workflow':5}]}", "$.rules[0].workflow",
	    "must be a workflow name");
	rules_refused("{'rules':[{'name':'a'}]}", "$.rules[0]", "missing \"workflow\"");
	rules_refused("{'default':'other_flow'}", "$.default", "unknown workflow");
	wf_rules_free(rules_ok("{'rules':[{'name':'a','workflow':'my_flow'}],"
	    "'default':'my_flow'}", known));
	wf_rules_free(rules_ok("{'rules':[{'name':'a','workflow':'manual_review'}],"
	    "'default':'standard_fulfillment'}", NULL));
}

static void
test_rules_validation(void **state)
{
	char text[512], name[140];
	struct wf_rules *r;

	(void)state;
	rules_refused("[]", "$", "a rules document must be an object");
	rules_refused("{'rule':[]}", "$.rule", "unknown field");
	rules_refused("{'rules':{}}", "$.rules", "must be an array of at most 100 rules");
	rules_refused("{'rules':[5]}", "$.rules[0]", "a rule must be an object");
	rules_refused("{'rules':[{'name':'a','workflow':'digital','enabled':true}]}",
	    "$.rules[0].enabled", "unknown field");
	rules_refused("{'rules':[{'workflow':'digital'}]}", "$.rules[0]", "missing \"name\"");
	rules_refused("{'rules':[{'name':'','workflow':'digital'}]}", "$.rules[0].name",
	    "1 to 128 bytes");
	rules_refused("{'rules':[{'name':'a\\nb','workflow':'digital'}]}", "$.rules[0].name",
	    "control characters");
	rules_refused("{'rules':[{'name':'a','priority':1000001,'workflow':'digital'}]}",
	    "$.rules[0].priority", "an integer from -1000000 to 1000000");
	rules_refused("{'rules':[{'name':'a','priority':-1000001,'workflow':'digital'}]}",
	    "$.rules[0].priority", "from -1000000");
	rules_refused("{'rules':[{'name':'a','priority':1.5,'workflow':'digital'}]}",
	    "$.rules[0].priority", "an integer");
	rules_refused("{'rules':[{'name':'a','priority':'1','workflow':'digital'}]}",
	    "$.rules[0].priority", "an integer");
	rules_refused("{'rules':[{'name':'a','workflow':'digital'},{'name':'b','if':"
	    "{'field':'colour','op':'eq','value':'red'},'workflow':'digital'}]}",
	    "$.rules[1].if.field", "unknown field \"colour\"");
	/* 128 bytes of UTF-8 text are a name (64 two-byte characters); 129 are not. */
	name[0] = '\0';
	for (int i = 0; i < 64; i++)
		strcat(name, "\xc3\xbc");
	snprintf(text, sizeof(text), "{'rules':[{'name':'%s','priority':-1000000,"
	    "'workflow':'digital'}]}", name);
	r = rules_ok(text, NULL);
	assert_string_equal(r->rules[0].name, name);
	assert_int_equal(r->rules[0].priority, -1000000);
	wf_rules_free(r);
	snprintf(text, sizeof(text), "{'rules':[{'name':'%sx','workflow':'digital'}]}", name);
	rules_refused(text, "$.rules[0].name", "1 to 128 bytes");
}

static void
test_rules_limit_100(void **state)
{
	json_t *doc = json_pack("{s:[]}", "rules"), *rules = json_object_get(doc, "rules");
	struct wf_err err;
	struct wf_rules *r;

	(void)state;
	for (int i = 0; i < 100; i++)
		json_array_append_new(rules, json_pack("{s:s,s:i,s:s}", "name", "r",
		    "priority", i % 3, "workflow", "digital"));
	r = wf_rules_parse(doc, NULL, &err);
	assert_non_null(r);
	assert_int_equal(r->nrules, 100);
	wf_rules_free(r);
	json_array_append_new(rules, json_pack("{s:s,s:s}", "name", "r", "workflow",
	    "digital"));
	assert_null(wf_rules_parse(doc, NULL, &err));
	assert_string_equal(err.path, "$.rules");
	assert_non_null(strstr(err.msg, "at most 100 rules"));
	json_decref(doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtins_made_once_under_concurrent_first_use),
		cmocka_unit_test(test_action_table),
		cmocka_unit_test(test_name_ok_is_lowercase_identifier_of_1_to_64),
		cmocka_unit_test(test_builtin_names),
		cmocka_unit_test(test_builtin_standard_fulfillment),
		cmocka_unit_test(test_builtin_manual_review),
		cmocka_unit_test(test_builtin_digital),
		cmocka_unit_test(test_builtin_documents_validate_again_as_given),
		cmocka_unit_test(test_parse_records_name_version_initial_and_a_copy),
		cmocka_unit_test(test_on_and_choose_take_the_first_alternative_that_holds),
		cmocka_unit_test(test_refcount_frees_at_zero),
		cmocka_unit_test(test_accepted_corner_cases),
		cmocka_unit_test(test_refuses_unknown_fields_and_non_objects),
		cmocka_unit_test(test_refuses_unknown_actions),
		cmocka_unit_test(test_refuses_unknown_condition_field_or_operator),
		cmocka_unit_test(test_refuses_unknown_states),
		cmocka_unit_test(test_refuses_triggers_that_do_not_match_the_entry),
		cmocka_unit_test(test_refuses_emitting_action_before_the_last_entry),
		cmocka_unit_test(test_refuses_alternative_after_one_without_if),
		cmocka_unit_test(test_refuses_bad_graphs),
		cmocka_unit_test(test_refuses_terminal_state_not_completed_or_failed),
		cmocka_unit_test(test_refuses_waiting_or_triggering_actions_where_they_cannot_run),
		cmocka_unit_test(test_refuses_bad_statuses),
		cmocka_unit_test(test_refuses_bad_names),
		cmocka_unit_test(test_state_limit_64),
		cmocka_unit_test(test_action_limits_16),
		cmocka_unit_test(test_trigger_limit_16),
		cmocka_unit_test(test_alternative_limit_1_to_8),
		cmocka_unit_test(test_description_limit_500_bytes),
		cmocka_unit_test(test_rules_highest_priority_that_holds_wins),
		cmocka_unit_test(test_rules_ties_keep_document_order),
		cmocka_unit_test(test_rules_no_match_gives_the_default),
		cmocka_unit_test(test_rules_unknown_workflow_refused_known_accepted),
		cmocka_unit_test(test_rules_validation),
		cmocka_unit_test(test_rules_limit_100),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
