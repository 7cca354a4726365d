/*
 * wf_def: workflow definitions, the built-in templates and the rules.
 *
 * Owns the action table (what each action may emit, wait for, and how it
 * is undone), the parser and validator of definition documents (every
 * refusal names the JSON path of what is wrong), the lookups the engine
 * runs a definition with, the built-in templates (a table of rows, one
 * per state, turned into documents and parsed like any other on first
 * use), and the creators' rules that pick a workflow for a new order.
 * Parsed definitions are immutable and reference counted.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/log.h"
#include "orderflow/order.h"
#include "orderflow/ship.h"
#include "orderflow/util.h"
#include "orderflow/wf_def.h"

#define WF_DEF_PATH_MAX		256	/* bytes of a path, as struct wf_err holds */
#define WF_DEF_INITIAL		"new"	/* the initial state when "initial" is absent */
#define WF_DEF_FALLBACK		"standard_fulfillment"	/* the rules' default default */
#define WF_RULES_NAME_MAX	128	/* bytes of a rule's name */
#define WF_RULES_PRIO_MAX	1000000	/* |priority| of a rule */

/* The actions, in the order of enum wf_action. */
static const struct wf_action_info wf_def_actions[WF_A_COUNT] = {
	[WF_A_VALIDATE_ORDER] = { "validate_order", { "validate", "reject", NULL },
	    "tiktok_hold", "validate", -1, WF_POLICY_WORKFLOW, -1,
	    "checks the order (lines, SKUs, TikTok status); waits while TikTok holds it "
	    "(UNPAID, ON_HOLD); emits validate or reject" },
	[WF_A_RESERVE_STOCK] = { "reserve_stock", { NULL }, "stock", NULL,
	    WF_A_RELEASE_STOCK, WF_POLICY_INVENTORY, -1,
	    "reserves every SKU of the order or none; waits for stock when some is missing" },
	[WF_A_RELEASE_STOCK] = { "release_stock", { NULL }, NULL, NULL, -1,
	    WF_POLICY_INVENTORY, -1, "releases the order's active reservations" },
	[WF_A_CONSUME_STOCK] = { "consume_stock", { NULL }, NULL, NULL, -1,
	    WF_POLICY_INVENTORY, -1,
	    "turns the order's reservations into shipped stock (on hand and reserved go down)" },
	[WF_A_AWAIT_APPROVAL] = { "await_approval", { "approve", "reject", NULL }, "approval",
	    "approve", -1, WF_POLICY_WORKFLOW, -1,
	    "waits for the creator to approve or reject the order" },
	[WF_A_AWAIT_SHIPMENT] = { "await_shipment", { "ship", NULL }, "shipment", "ship", -1,
	    WF_POLICY_WORKFLOW, -1,
	    "waits until TikTok reports the order shipped (shipped outside orderflow, or a "
	    "manual skip)" },
	[WF_A_AWAIT_DELIVERY] = { "await_delivery", { "deliver", NULL }, "delivery", "deliver",
	    -1, WF_POLICY_WORKFLOW, -1,
	    "waits until the carrier or TikTok reports the delivery; fails when the carrier "
	    "returns the package or gives up" },
	[WF_A_CREATE_SHIPPING_LABEL] = { "create_shipping_label", { NULL }, NULL, NULL,
	    WF_A_VOID_LABEL, WF_POLICY_SHIPPING, SHIP_LABEL,
	    "seller shipping: buys each package's label from the carrier, at the rate the "
	    "creator's rule picks (TikTok shipping: nothing to buy)" },
	[WF_A_SHIP_PACKAGE] = { "ship_package", { NULL }, NULL, NULL, -1, WF_POLICY_SHIPPING,
	    SHIP_PACKAGES,
	    "ships each package on TikTok: with the creator's handover method and TikTok's "
	    "label, or with the bought label's tracking number" },
	[WF_A_UPDATE_TIKTOK_STATUS] = { "update_tiktok_status", { NULL }, NULL, NULL, -1,
	    WF_POLICY_SHIPPING, SHIP_CONFIRM,
	    "reads the order back from TikTok until TikTok reports it shipped" },
	[WF_A_VOID_LABEL] = { "void_label", { NULL }, NULL, NULL, -1, WF_POLICY_SHIPPING,
	    SHIP_VOID,
	    "refunds the labels bought for packages not shipped; a refused refund needs a person" },
};

/* A built-in template: its name and what it is for. */
struct wf_def_template {
	const char	*name;		/* the workflow name */
	const char	*description;	/* the document's "description" */
};

/* The built-in templates; their states are in wf_def_rows. */
static const struct wf_def_template wf_def_templates[] = {
	{ "standard_fulfillment", "validate, reserve the stock (waiting for what is missing), "
	    "buy the label, ship on TikTok, consume the stock, wait for the delivery" },
	{ "manual_review", "like standard_fulfillment, but the creator approves or rejects "
	    "the order before its stock is reserved" },
	{ "digital", "validate and complete: no stock, no shipping" },
};

/* One state of a built-in template. */
struct wf_def_row {
	const char	*tmpl;		/* the template it belongs to */
	const char	*state;		/* the state's name */
	const char	*wf_status;	/* "workflow_status", or NULL: the state's name */
	const char	*order_status;	/* "order_status", or NULL */
	const char	*entry;		/* entry actions, space-separated */
	const char	*on;		/* transitions "trigger>target ...", "": terminal */
};

/* The built-in templates, one row per state, initial state first. */
static const struct wf_def_row wf_def_rows[] = {
	{ "standard_fulfillment", "new", NULL, NULL, "validate_order",
	    "validate>validated reject>failed" },
	{ "standard_fulfillment", "validated", NULL, NULL, "reserve_stock",
	    "done>inventory_reserved" },
	{ "standard_fulfillment", "inventory_reserved", NULL, "processing", "",
	    "done>ready_to_ship" },
	{ "standard_fulfillment", "ready_to_ship", NULL, NULL,
	    "create_shipping_label ship_package update_tiktok_status", "done>shipped" },
	{ "standard_fulfillment", "shipped", NULL, "shipped", "consume_stock await_delivery",
	    "deliver>completed" },
	{ "standard_fulfillment", "completed", NULL, "delivered", "", "" },
	{ "standard_fulfillment", "failed", NULL, NULL, "", "" },

	{ "manual_review", "new", NULL, NULL, "validate_order",
	    "validate>awaiting_approval reject>failed" },
	{ "manual_review", "awaiting_approval", "validated", NULL, "await_approval",
	    "approve>validated reject>rejected" },
	{ "manual_review", "validated", NULL, NULL, "reserve_stock", "done>inventory_reserved" },
	{ "manual_review", "inventory_reserved", NULL, "processing", "", "done>ready_to_ship" },
	{ "manual_review", "ready_to_ship", NULL, NULL,
	    "create_shipping_label ship_package update_tiktok_status", "done>shipped" },
	{ "manual_review", "shipped", NULL, "shipped", "consume_stock await_delivery",
	    "deliver>completed" },
	{ "manual_review", "completed", NULL, "delivered", "", "" },
	{ "manual_review", "rejected", "failed", NULL, "", "" },
	{ "manual_review", "failed", NULL, NULL, "", "" },

	{ "digital", "new", NULL, NULL, "validate_order", "validate>completed reject>failed" },
	{ "digital", "completed", NULL, NULL, "", "" },
	{ "digital", "failed", NULL, NULL, "", "" },
};

#define WF_DEF_NTEMPLATES ((int)NELEM(wf_def_templates))

static pthread_once_t wf_def_builtin_once = PTHREAD_ONCE_INIT;
static struct wf_def *wf_def_builtins[NELEM(wf_def_templates)];
static const char *wf_def_builtin_list[NELEM(wf_def_templates) + 1];

/* The table row of action a, for the engine and the validator. */
const struct wf_action_info *
wf_action_info(int a)
{
	return a >= 0 && a < WF_A_COUNT ? &wf_def_actions[a] : NULL;
}

/* Actions are few: a linear search by name. */
int
wf_action_find(const char *name)
{
	for (int a = 0; name != NULL && a < WF_A_COUNT; a++)
		if (strcmp(wf_def_actions[a].name, name) == 0)
			return a;
	return -1;
}

/* [a-z][a-z0-9_]{0,63}: the names that may stand in paths and URLs as they are. */
bool
wf_def_name_ok(const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;

	return len > 0 && len <= WF_DEF_NAME_MAX && s[0] >= 'a' && s[0] <= 'z' &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == len;
}

/* Refuse v when it is not an object or has a key not in keys (NULL-terminated). */
static bool
wf_def_keys_ok(json_t *v, const char *const *keys, const char *path, const char *what,
    struct wf_err *err)
{
	char kpath[WF_DEF_PATH_MAX];
	const char *key;
	json_t *val;
	size_t i;

	if (!json_is_object(v))
		return wf_err_fail(err, path, "%s must be an object", what);
	json_object_foreach(v, key, val) {
		for (i = 0; keys[i] != NULL && strcmp(keys[i], key) != 0; i++)
			;
		if (keys[i] == NULL) {
			wf_err_key_path(kpath, sizeof(kpath), path, key);
			return wf_err_fail(err, kpath, "unknown field");
		}
	}
	return true;
}

/* An optional "description" of obj: a string of at most WF_DEF_DESC_MAX bytes. */
static bool
wf_def_desc_ok(json_t *obj, const char *path, struct wf_err *err)
{
	json_t *v = json_object_get(obj, "description");
	char dpath[WF_DEF_PATH_MAX];

	if (v == NULL)
		return true;
	wf_err_path(dpath, sizeof(dpath), "%s.description", path);
	if (!json_is_string(v))
		return wf_err_fail(err, dpath, "must be a string");
	if (json_string_length(v) > WF_DEF_DESC_MAX)
		return wf_err_fail(err, dpath, "a description has at most %d bytes",
		    WF_DEF_DESC_MAX);
	return true;
}

/* True when action a neither waits nor emits triggers. */
static bool
wf_def_plain(int a)
{
	return wf_def_actions[a].wait_kind == NULL && wf_def_actions[a].emits[0] == NULL;
}

/* True when action a may end with trigger. */
static bool
wf_def_emits(int a, const char *trigger)
{
	for (int i = 0; wf_def_actions[a].emits[i] != NULL; i++)
		if (strcmp(wf_def_actions[a].emits[i], trigger) == 0)
			return true;
	return false;
}

/* An array of action names at path into out[*n]. */
static bool
wf_def_action_list(json_t *v, const char *path, int *out, int *n, struct wf_err *err)
{
	char apath[WF_DEF_PATH_MAX];
	size_t i;
	json_t *e;

	if (!json_is_array(v))
		return wf_err_fail(err, path, "must be an array of action names");
	if (json_array_size(v) > WF_DEF_MAX_ACTIONS)
		return wf_err_fail(err, path, "at most %d actions", WF_DEF_MAX_ACTIONS);
	json_array_foreach(v, i, e) {
		wf_err_path(apath, sizeof(apath), "%s[%zu]", path, i);
		if (!json_is_string(e))
			return wf_err_fail(err, apath, "must be an action name");
		if ((out[i] = wf_action_find(json_string_value(e))) < 0)
			return wf_err_fail(err, apath, "unknown action \"%.64s\"",
			    json_string_value(e));
		*n = (int)i + 1;
	}
	return true;
}

/* Refuse a waiting or triggering action among acts[n] (at path), which stand where. */
static bool
wf_def_plain_ok(const int *acts, int n, const char *path, const char *where,
    struct wf_err *err)
{
	char apath[WF_DEF_PATH_MAX];
	int i;

	for (i = 0; i < n && wf_def_plain(acts[i]); i++)
		;
	if (i == n)
		return true;
	wf_err_path(apath, sizeof(apath), "%s[%d]", path, i);
	return wf_err_fail(err, apath, "%s %s, so it cannot be %s", wf_def_actions[acts[i]].name,
	    wf_def_actions[acts[i]].wait_kind != NULL ? "waits" : "emits triggers", where);
}

/* One alternative {"target", "if", "actions"} of a transition. */
static bool
wf_def_alt(const struct wf_def *d, struct wf_alt *alt, json_t *v, const char *path,
    struct wf_err *err)
{
	static const char *const keys[] = { "target", "if", "actions", NULL };
	json_t *target = json_object_get(v, "target"), *acts = json_object_get(v, "actions");
	char sub[WF_DEF_PATH_MAX];

	if (!wf_def_keys_ok(v, keys, path, "a transition", err))
		return false;
	wf_err_path(sub, sizeof(sub), "%s.target", path);
	if (target == NULL)
		return wf_err_fail(err, path, "missing \"target\"");
	if (!json_is_string(target))
		return wf_err_fail(err, sub, "must be a state name");
	if ((alt->target = wf_def_state(d, json_string_value(target))) < 0)
		return wf_err_fail(err, sub, "unknown state \"%.64s\"",
		    json_string_value(target));
	if (json_object_get(v, "if") != NULL) {
		wf_err_path(sub, sizeof(sub), "%s.if", path);
		if ((alt->cond = wf_cond_parse(json_object_get(v, "if"), sub, err)) == NULL)
			return false;
	}
	if (acts == NULL)
		return true;
	wf_err_path(sub, sizeof(sub), "%s.actions", path);
	return wf_def_action_list(acts, sub, alt->actions, &alt->nactions, err) &&
	    wf_def_plain_ok(alt->actions, alt->nactions, sub, "a transition action", err);
}

/* The transition of one trigger: one alternative, or a list of 1..WF_DEF_MAX_ALTS. */
static bool
wf_def_transition(const struct wf_def *d, struct wf_transition *t, json_t *v,
    const char *path, struct wf_err *err)
{
	char apath[WF_DEF_PATH_MAX];
	size_t i;
	json_t *e;

	if (!json_is_array(v)) {
		t->nalts = 1;
		return wf_def_alt(d, &t->alts[0], v, path, err);
	}
	if (json_array_size(v) == 0 || json_array_size(v) > WF_DEF_MAX_ALTS)
		return wf_err_fail(err, path, "a transition has 1 to %d alternatives",
		    WF_DEF_MAX_ALTS);
	json_array_foreach(v, i, e) {
		wf_err_path(apath, sizeof(apath), "%s[%zu]", path, i);
		if (i > 0 && t->alts[i - 1].cond == NULL)
			return wf_err_fail(err, apath, "unreachable: the alternative before "
			    "it has no \"if\"");
		t->nalts = (int)i + 1;
		if (!wf_def_alt(d, &t->alts[i], e, apath, err))
			return false;
	}
	return true;
}

/* The "on" object of state st: its transitions, by trigger. */
static bool
wf_def_on_parse(const struct wf_def *d, struct wf_state *st, json_t *on, const char *path,
    struct wf_err *err)
{
	char tpath[WF_DEF_PATH_MAX];
	const char *trigger;
	json_t *v;

	if (!json_is_object(on))
		return wf_err_fail(err, path, "must be an object (trigger: transition)");
	if (json_object_size(on) > WF_DEF_MAX_TRIGGERS)
		return wf_err_fail(err, path, "at most %d transitions", WF_DEF_MAX_TRIGGERS);
	st->trans = xcalloc(json_object_size(on), sizeof(*st->trans));
	json_object_foreach(on, trigger, v) {
		struct wf_transition *t = &st->trans[st->ntrans++];

		wf_err_key_path(tpath, sizeof(tpath), path, trigger);
		if (!wf_def_name_ok(trigger))
			return wf_err_fail(err, tpath, "a trigger name must match "
			    "[a-z][a-z0-9_]{0,63}");
		snprintf(t->trigger, sizeof(t->trigger), "%s", trigger);
		if (!wf_def_transition(d, t, v, tpath, err))
			return false;
	}
	return true;
}

/* The entry actions of st; one that emits triggers must be the last. */
static bool
wf_def_entry(struct wf_state *st, json_t *entry, const char *path, struct wf_err *err)
{
	char apath[WF_DEF_PATH_MAX];

	if (!wf_def_action_list(entry, path, st->entry, &st->nentry, err))
		return false;
	for (int i = 0; i < st->nentry - 1; i++) {
		if (wf_def_actions[st->entry[i]].emits[0] == NULL)
			continue;
		wf_err_path(apath, sizeof(apath), "%s[%d]", path, i);
		return wf_err_fail(err, apath, "%s emits triggers, so it must be the last "
		    "entry action", wf_def_actions[st->entry[i]].name);
	}
	return true;
}

/* Member key of sv, a what parsed by parse, into *out (-1 when absent). */
static bool
wf_def_status(json_t *sv, const char *key, int (*parse)(const char *), const char *what,
    const char *path, int *out, struct wf_err *err)
{
	json_t *v = json_object_get(sv, key);
	char spath[WF_DEF_PATH_MAX];

	*out = -1;
	if (v == NULL)
		return true;
	wf_err_path(spath, sizeof(spath), "%s.%s", path, key);
	if (!json_is_string(v))
		return wf_err_fail(err, spath, "must be a string (%s)", what);
	if ((*out = parse(json_string_value(v))) < 0)
		return wf_err_fail(err, spath, "unknown %s \"%.64s\"", what,
		    json_string_value(v));
	return true;
}

/* "workflow_status" (by default the state's name) and "order_status" of st. */
static bool
wf_def_statuses(struct wf_state *st, json_t *sv, const char *path, struct wf_err *err)
{
	if (!wf_def_status(sv, "workflow_status", order_wf_status_parse, "workflow status",
	    path, &st->workflow_status, err) || !wf_def_status(sv, "order_status",
	    order_status_parse, "order status", path, &st->order_status, err))
		return false;
	if (st->workflow_status < 0 &&
	    (st->workflow_status = order_wf_status_parse(st->name)) < 0)
		return wf_err_fail(err, path, "missing \"workflow_status\" (required unless "
		    "the state's name is a workflow status)");
	if (st->workflow_status == ORDER_WF_CANCELLED)
		return wf_err_fail(err, path, "workflow_status cancelled is the engine's: it marks "
		    "a cancelled workflow, not a state of one");
	return true;
}

/* A terminal state: completed or failed, and nothing in its entry waits or emits. */
static bool
wf_def_terminal_ok(struct wf_state *st, json_t *sv, const char *path, struct wf_err *err)
{
	char spath[WF_DEF_PATH_MAX];

	st->terminal = true;
	st->failure = st->workflow_status == ORDER_WF_FAILED;
	if (st->workflow_status != ORDER_WF_COMPLETED && !st->failure) {
		wf_err_path(spath, sizeof(spath), "%s%s", path,
		    json_object_get(sv, "workflow_status") != NULL ? ".workflow_status" : "");
		return wf_err_fail(err, spath, "a terminal state (no transitions) must have "
		    "workflow_status completed or failed, not %s",
		    order_wf_status_name(st->workflow_status));
	}
	wf_err_path(spath, sizeof(spath), "%s.entry", path);
	return wf_def_plain_ok(st->entry, st->nentry, spath,
	    "an entry action of a terminal state", err);
}

/* The transition of trigger among st's, or NULL. */
static const struct wf_transition *
wf_def_trans_find(const struct wf_state *st, const char *trigger)
{
	for (int i = 0; i < st->ntrans; i++)
		if (strcmp(st->trans[i].trigger, trigger) == 0)
			return &st->trans[i];
	return NULL;
}

/*
 * The triggers of st: every one its entry can end with has a transition,
 * "done" has one when the entry can continue to its end, and no other
 * trigger has one (nothing would fire it).
 */
static bool
wf_def_triggers_ok(const struct wf_state *st, const char *path, struct wf_err *err)
{
	int last = st->nentry > 0 ? st->entry[st->nentry - 1] : -1;
	const char *const *emits = last >= 0 ? wf_def_actions[last].emits : NULL;
	char tpath[WF_DEF_PATH_MAX], opath[WF_DEF_PATH_MAX];

	wf_err_path(opath, sizeof(opath), "%s.on", path);
	for (int i = 0; emits != NULL && emits[i] != NULL; i++)
		if (wf_def_trans_find(st, emits[i]) == NULL)
			return wf_err_fail(err, opath, "no transition for \"%s\", which %s emits",
			    emits[i], wf_def_actions[last].name);
	if ((emits == NULL || emits[0] == NULL) && wf_def_trans_find(st, WF_DEF_DONE) == NULL)
		return wf_err_fail(err, opath, "no transition for \"" WF_DEF_DONE "\", which "
		    "fires when every entry action has continued");
	for (int i = 0; i < st->ntrans; i++) {
		const char *trigger = st->trans[i].trigger;

		if (strcmp(trigger, WF_DEF_DONE) == 0 ||
		    (last >= 0 && wf_def_emits(last, trigger)))
			continue;
		wf_err_path(tpath, sizeof(tpath), "%s.%s", opath, trigger);
		return wf_err_fail(err, tpath, "no entry action of this state emits \"%s\"",
		    trigger);
	}
	return true;
}

/* State i of d, from its object sv. */
static bool
wf_def_state_parse(struct wf_def *d, int i, json_t *sv, struct wf_err *err)
{
	static const char *const keys[] = { "workflow_status", "order_status", "description",
	    "entry", "on", NULL };
	struct wf_state *st = &d->states[i];
	json_t *entry = json_object_get(sv, "entry"), *on = json_object_get(sv, "on");
	char path[WF_DEF_PATH_MAX], sub[WF_DEF_PATH_MAX];

	wf_err_path(path, sizeof(path), "$.states.%s", st->name);
	if (!wf_def_keys_ok(sv, keys, path, "a state", err) ||
	    !wf_def_statuses(st, sv, path, err) || !wf_def_desc_ok(sv, path, err))
		return false;
	wf_err_path(sub, sizeof(sub), "%s.entry", path);
	if (entry != NULL && !wf_def_entry(st, entry, sub, err))
		return false;
	wf_err_path(sub, sizeof(sub), "%s.on", path);
	if (on != NULL && !wf_def_on_parse(d, st, on, sub, err))
		return false;
	if (st->ntrans == 0)
		return wf_def_terminal_ok(st, sv, path, err);
	return wf_def_triggers_ok(st, path, err);
}

/* The "states" object: 1..WF_DEF_MAX_STATES valid names, each an object; names into d. */
static bool
wf_def_state_names(struct wf_def *d, json_t *states, struct wf_err *err)
{
	char path[WF_DEF_PATH_MAX];
	const char *name;
	json_t *v;

	if (states == NULL)
		return wf_err_fail(err, "$", "missing \"states\"");
	if (!json_is_object(states))
		return wf_err_fail(err, "$.states", "must be an object (name: state)");
	if (json_object_size(states) == 0 || json_object_size(states) > WF_DEF_MAX_STATES)
		return wf_err_fail(err, "$.states", "a definition has 1 to %d states",
		    WF_DEF_MAX_STATES);
	d->states = xcalloc(json_object_size(states), sizeof(*d->states));
	json_object_foreach(states, name, v) {
		wf_err_key_path(path, sizeof(path), "$.states", name);
		if (!wf_def_name_ok(name))
			return wf_err_fail(err, path, "a state name must match "
			    "[a-z][a-z0-9_]{0,63}");
		snprintf(d->states[d->nstates++].name, sizeof(d->states->name), "%s", name);
	}
	return true;
}

/* The initial state: "initial", or "new" when absent. */
static bool
wf_def_initial(struct wf_def *d, json_t *doc, struct wf_err *err)
{
	json_t *v = json_object_get(doc, "initial");
	const char *name = v != NULL ? json_string_value(v) : WF_DEF_INITIAL;

	if (name == NULL)
		return wf_err_fail(err, "$.initial", "must be a state name");
	if ((d->initial = wf_def_state(d, name)) < 0)
		return wf_err_fail(err, "$.initial", "unknown state \"%.64s\"%s", name,
		    v == NULL ? " (the initial state when \"initial\" is absent)" : "");
	return true;
}

/* Mark in seen[] every state reachable from s. */
static void
wf_def_reach(const struct wf_def *d, int s, bool *seen)
{
	if (seen[s])
		return;
	seen[s] = true;
	for (int t = 0; t < d->states[s].ntrans; t++)
		for (int a = 0; a < d->states[s].trans[t].nalts; a++)
			wf_def_reach(d, d->states[s].trans[t].alts[a].target, seen);
}

/* True when some transition of state s leads into a state marked in ok[]. */
static bool
wf_def_leads_to(const struct wf_def *d, int s, const bool *ok)
{
	for (int t = 0; t < d->states[s].ntrans; t++)
		for (int a = 0; a < d->states[s].trans[t].nalts; a++)
			if (ok[d->states[s].trans[t].alts[a].target])
				return true;
	return false;
}

/* The graph: a terminal state exists, every state is reachable and can end. */
static bool
wf_def_graph_ok(const struct wf_def *d, struct wf_err *err)
{
	bool seen[WF_DEF_MAX_STATES] = { false }, ends[WF_DEF_MAX_STATES] = { false };
	char path[WF_DEF_PATH_MAX];
	bool more = true;
	int s;

	for (s = 0; s < d->nstates; s++)
		ends[s] = d->states[s].terminal;
	for (s = 0; s < d->nstates && !ends[s]; s++)
		;
	if (s == d->nstates)
		return wf_err_fail(err, "$.states", "no terminal state (one without "
		    "transitions)");
	while (more)
		for (more = false, s = 0; s < d->nstates; s++)
			if (!ends[s] && wf_def_leads_to(d, s, ends))
				more = ends[s] = true;
	wf_def_reach(d, d->initial, seen);
	for (s = 0; s < d->nstates; s++) {
		wf_err_path(path, sizeof(path), "$.states.%s", d->states[s].name);
		if (!seen[s])
			return wf_err_fail(err, path, "unreachable from the initial state \"%s\"",
			    d->states[d->initial].name);
		if (!ends[s])
			return wf_err_fail(err, path, "no terminal state can be reached from "
			    "here");
	}
	return true;
}

/* Free d and all it owns, whatever its refs say. */
static void
wf_def_free(struct wf_def *d)
{
	for (int s = 0; s < d->nstates; s++) {
		for (int t = 0; t < d->states[s].ntrans; t++)
			for (int a = 0; a < WF_DEF_MAX_ALTS; a++)
				wf_cond_free(d->states[s].trans[t].alts[a].cond);
		free(d->states[s].trans);
	}
	free(d->states);
	json_decref(d->doc);
	free(d);
}

/* The top level, then the names, the initial state, each state, the graph. */
static bool
wf_def_doc_ok(struct wf_def *d, json_t *doc, struct wf_err *err)
{
	static const char *const keys[] = { "initial", "description", "states", NULL };
	json_t *states = json_object_get(doc, "states"), *sv;
	const char *name;
	int i = 0;

	if (!wf_def_keys_ok(doc, keys, "$", "a workflow definition", err) ||
	    !wf_def_desc_ok(doc, "$", err) || !wf_def_state_names(d, states, err) ||
	    !wf_def_initial(d, doc, err))
		return false;
	json_object_foreach(states, name, sv)
		if (!wf_def_state_parse(d, i++, sv, err))
			return false;
	return wf_def_graph_ok(d, err);
}

/* A copy of doc is kept so GET shows what was given, whatever the caller does to its own. */
struct wf_def *
wf_def_parse(json_t *doc, const char *name, int version, struct wf_err *err)
{
	struct wf_def *d;

	if (!wf_def_name_ok(name))
		return wf_err_set(err, "$", "the workflow name must match "
		    "[a-z][a-z0-9_]{0,63}");
	d = xcalloc(1, sizeof(*d));
	atomic_init(&d->refs, 1);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->version = version;
	if (!wf_def_doc_ok(d, doc, err)) {
		wf_def_free(d);
		return NULL;
	}
	d->doc = json_deep_copy(doc);
	return d;
}

/* One more holder of d. */
struct wf_def *
wf_def_ref(struct wf_def *d)
{
	if (d != NULL)
		atomic_fetch_add(&d->refs, 1);
	return d;
}

/* One holder less; the last one frees d. */
void
wf_def_unref(struct wf_def *d)
{
	if (d != NULL && atomic_fetch_sub(&d->refs, 1) == 1)
		wf_def_free(d);
}

/* States are at most 64: a linear search by name. */
int
wf_def_state(const struct wf_def *d, const char *name)
{
	for (int s = 0; name != NULL && s < d->nstates; s++)
		if (strcmp(d->states[s].name, name) == 0)
			return s;
	return -1;
}

/* What the engine asks when an action ends with a trigger. */
const struct wf_transition *
wf_def_on(const struct wf_def *d, int s, const char *trigger)
{
	if (s < 0 || s >= d->nstates || trigger == NULL)
		return NULL;
	return wf_def_trans_find(&d->states[s], trigger);
}

/* Alternatives in order; a NULL condition always holds. */
const struct wf_alt *
wf_def_choose(const struct wf_transition *t, json_t *facts)
{
	for (int a = 0; t != NULL && a < t->nalts; a++)
		if (wf_cond_eval(t->alts[a].cond, facts))
			return &t->alts[a];
	return NULL;
}

/* The space-separated words of s as a JSON array of strings. */
static json_t *
wf_def_row_words(const char *s)
{
	json_t *a = json_array();
	size_t n;

	while (*(s += strspn(s, " ")) != '\0') {
		n = strcspn(s, " ");
		json_array_append_new(a, json_stringn(s, n));
		s += n;
	}
	return a;
}

/* One row as a state object: statuses, entry actions, "trigger>target" transitions. */
static json_t *
wf_def_row_state(const struct wf_def_row *r)
{
	json_t *st = json_object(), *on = json_object(), *words = wf_def_row_words(r->on), *w;
	size_t i;

	if (r->wf_status != NULL)
		json_object_set_new(st, "workflow_status", json_string(r->wf_status));
	if (r->order_status != NULL)
		json_object_set_new(st, "order_status", json_string(r->order_status));
	if (r->entry[0] != '\0')
		json_object_set_new(st, "entry", wf_def_row_words(r->entry));
	json_array_foreach(words, i, w) {
		const char *s = json_string_value(w), *gt = strchr(s, '>');
		char *trigger = xstrndup(s, gt != NULL ? (size_t)(gt - s) : strlen(s));

		json_object_set_new(on, trigger, json_pack("{s:s}", "target",
		    gt != NULL ? gt + 1 : ""));
		free(trigger);
	}
	json_decref(words);
	if (json_object_size(on) > 0)
		json_object_set(st, "on", on);
	json_decref(on);
	return st;
}

/* Template t's rows as a definition document. */
static json_t *
wf_def_template_doc(const struct wf_def_template *t)
{
	json_t *states = json_object();

	for (size_t i = 0; i < NELEM(wf_def_rows); i++)
		if (strcmp(wf_def_rows[i].tmpl, t->name) == 0)
			json_object_set_new(states, wf_def_rows[i].state,
			    wf_def_row_state(&wf_def_rows[i]));
	return json_pack("{s:s,s:o}", "description", t->description, "states", states);
}

/* Parse every template, once; one that fails is a bug in the table above. */
static void
wf_def_builtin_init(void)
{
	struct wf_err err;

	for (int i = 0; i < WF_DEF_NTEMPLATES; i++) {
		json_t *doc = wf_def_template_doc(&wf_def_templates[i]);

		wf_def_builtins[i] = wf_def_parse(doc, wf_def_templates[i].name, 0, &err);
		json_decref(doc);
		if (wf_def_builtins[i] == NULL) {
			log_error("built-in workflow does not validate", "workflow=%s path=%s "
			    "error=%s", wf_def_templates[i].name, log_quote(err.path),
			    log_quote(err.msg));
			abort();
		}
		wf_def_builtins[i]->builtin = true;
		wf_def_builtin_list[i] = wf_def_templates[i].name;
	}
}

/* A built-in template by name, parsed on the first call of any thread. */
struct wf_def *
wf_def_builtin(const char *name)
{
	pthread_once(&wf_def_builtin_once, wf_def_builtin_init);
	for (int i = 0; name != NULL && i < WF_DEF_NTEMPLATES; i++)
		if (strcmp(wf_def_builtins[i]->name, name) == 0)
			return wf_def_builtins[i];
	return NULL;
}

/* The templates' names, in the order of wf_def_templates. */
const char *const *
wf_def_builtin_names(void)
{
	pthread_once(&wf_def_builtin_once, wf_def_builtin_init);
	return wf_def_builtin_list;
}

/* Whether name is a built-in template or one of known (NULL-terminated, may be NULL). */
static bool
wf_rules_known(const char *name, const char *const *known)
{
	if (!wf_def_name_ok(name))
		return false;
	if (wf_def_builtin(name) != NULL)
		return true;
	for (int i = 0; known != NULL && known[i] != NULL; i++)
		if (strcmp(known[i], name) == 0)
			return true;
	return false;
}

/* A workflow name at path (v borrowed) into buf, when it is a known one. */
static bool
wf_rules_workflow(json_t *v, const char *const *known, char *buf, size_t size,
    const char *path, struct wf_err *err)
{
	if (!json_is_string(v))
		return wf_err_fail(err, path, "must be a workflow name");
	if (!wf_rules_known(json_string_value(v), known))
		return wf_err_fail(err, path, "unknown workflow \"%.64s\"",
		    json_string_value(v));
	snprintf(buf, size, "%s", json_string_value(v));
	return true;
}

/* A rule's name: 1..128 bytes of text without control characters. */
static bool
wf_rules_name(struct wf_rule *r, json_t *v, const char *path, struct wf_err *err)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	char npath[WF_DEF_PATH_MAX];

	if (v == NULL)
		return wf_err_fail(err, path, "missing \"name\"");
	wf_err_path(npath, sizeof(npath), "%s.name", path);
	if (s == NULL || len == 0 || len > WF_RULES_NAME_MAX)
		return wf_err_fail(err, npath, "must be a string of 1 to %d bytes",
		    WF_RULES_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return wf_err_fail(err, npath, "must not hold control characters");
	snprintf(r->name, sizeof(r->name), "%s", s);
	return true;
}

/* Rule i {"name", "priority", "if", "workflow"} into r. */
static bool
wf_rules_one(struct wf_rule *r, json_t *v, size_t i, const char *const *known,
    struct wf_err *err)
{
	static const char *const keys[] = { "name", "priority", "if", "workflow", NULL };
	json_t *prio = json_object_get(v, "priority"), *wf = json_object_get(v, "workflow");
	char path[WF_DEF_PATH_MAX], sub[WF_DEF_PATH_MAX];

	wf_err_path(path, sizeof(path), "$.rules[%zu]", i);
	if (!wf_def_keys_ok(v, keys, path, "a rule", err) ||
	    !wf_rules_name(r, json_object_get(v, "name"), path, err))
		return false;
	wf_err_path(sub, sizeof(sub), "%s.priority", path);
	if (prio != NULL && (!json_is_integer(prio) ||
	    json_integer_value(prio) < -WF_RULES_PRIO_MAX ||
	    json_integer_value(prio) > WF_RULES_PRIO_MAX))
		return wf_err_fail(err, sub, "must be an integer from %d to %d",
		    -WF_RULES_PRIO_MAX, WF_RULES_PRIO_MAX);
	r->priority = (long)json_integer_value(prio);
	wf_err_path(sub, sizeof(sub), "%s.if", path);
	if (json_object_get(v, "if") != NULL &&
	    (r->cond = wf_cond_parse(json_object_get(v, "if"), sub, err)) == NULL)
		return false;
	wf_err_path(sub, sizeof(sub), "%s.workflow", path);
	if (wf == NULL)
		return wf_err_fail(err, path, "missing \"workflow\"");
	return wf_rules_workflow(wf, known, r->workflow, sizeof(r->workflow), sub, err);
}

/* Priority descending, ties in document order: an insertion sort is stable. */
static void
wf_rules_sort(struct wf_rules *r)
{
	for (int i = 1; i < r->nrules; i++) {
		struct wf_rule tmp = r->rules[i];
		int j;

		for (j = i; j > 0 && r->rules[j - 1].priority < tmp.priority; j--)
			r->rules[j] = r->rules[j - 1];
		r->rules[j] = tmp;
	}
}

/* The "rules" array (absent: none) into r. */
static bool
wf_rules_list(struct wf_rules *r, json_t *rules, const char *const *known,
    struct wf_err *err)
{
	size_t i;
	json_t *v;

	if (rules == NULL)
		return true;
	if (!json_is_array(rules) || json_array_size(rules) > WF_RULES_MAX)
		return wf_err_fail(err, "$.rules", "must be an array of at most %d rules",
		    WF_RULES_MAX);
	r->rules = xcalloc(json_array_size(rules), sizeof(*r->rules));
	json_array_foreach(rules, i, v) {
		r->nrules++;
		if (!wf_rules_one(&r->rules[i], v, i, known, err))
			return false;
	}
	return true;
}

/* Check everything, then sort once so choosing is a scan. */
struct wf_rules *
wf_rules_parse(json_t *doc, const char *const *known, struct wf_err *err)
{
	static const char *const keys[] = { "rules", "default", NULL };
	struct wf_rules *r = xcalloc(1, sizeof(*r));
	json_t *def = json_object_get(doc, "default");

	snprintf(r->fallback, sizeof(r->fallback), "%s", WF_DEF_FALLBACK);
	if (!wf_def_keys_ok(doc, keys, "$", "a rules document", err) ||
	    !wf_rules_list(r, json_object_get(doc, "rules"), known, err) ||
	    (def != NULL && !wf_rules_workflow(def, known, r->fallback, sizeof(r->fallback),
	    "$.default", err))) {
		wf_rules_free(r);
		return NULL;
	}
	wf_rules_sort(r);
	return r;
}

/* Free r and its conditions; NULL is fine. */
void
wf_rules_free(struct wf_rules *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->nrules; i++)
		wf_cond_free(r->rules[i].cond);
	free(r->rules);
	free(r);
}

/* The rules are sorted, so the first that holds is the winner. */
const char *
wf_rules_choose(const struct wf_rules *r, json_t *facts)
{
	if (r == NULL)
		return WF_DEF_FALLBACK;
	for (int i = 0; i < r->nrules; i++)
		if (wf_cond_eval(r->rules[i].cond, facts))
			return r->rules[i].workflow;
	return r->fallback;
}
