/*
 * wf_step: the decisions of a workflow run.
 *
 * A decision works on a copy of the run (struct wf_sim) and records, for
 * every step it takes, a history entry; it ends in one commit item whose
 * "then" is the copy's final state.  A reservation cannot know its outcome
 * before it commits, so its item carries one next state per outcome; the
 * ok one goes on through the pure steps after it (wf_sim_go_on), the
 * others stop there, and the engine decides again once it committed.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/order.h"
#include "orderflow/util.h"
#include "orderflow/wf_step.h"

/* Steps one decision may take: a definition whose pure steps loop fails instead. */
#define WF_STEP_MAX_STEPS 64

static const char *const wf_status_names[WF_STATUS_COUNT + 1] = {
	"running", "waiting", "paused", "failed", "compensating", "completed", "cancelled", NULL
};

static const char *const wf_manual_names[WF_M_COUNT + 1] = {
	"retry", "skip", "cancel", "pause", "resume", "approve", "reject", NULL
};

/* The part of a run a decision changes. */
struct wf_sim {
	const struct wf_run *r;
	int		state, action, status, attempt, seq;
	char		wait[24];
	char		pending[WF_DEF_NAME_MAX + 1];
	bool		terminal, cancel_declined, lease;
	int		ncomp;
	int		comp[WF_STEP_MAX_COMP];
	int		end_status, paused_from;
	int		wf_status;	/* orders.workflow_status to set, or -1 */
	int		order_status;	/* orders.order_status to ask for, or -1 */
	int64_t		due_ms;		/* -1: not due */
	char		error[256];	/* last_error, "" clears */
	int		errors_add;
	const char	*final;		/* "completed", "failed", "cancelled" or NULL */
	json_t		*hist;		/* entries to append */
	int		steps;
};

const char *
wf_status_name(int s)
{
	return s >= 0 && s < WF_STATUS_COUNT ? wf_status_names[s] : NULL;
}

int
wf_status_parse(const char *name)
{
	return util_name_index(wf_status_names, WF_STATUS_COUNT, name);
}

const char *
wf_manual_name(int m)
{
	return m >= 0 && m < WF_M_COUNT ? wf_manual_names[m] : NULL;
}

int
wf_manual_parse(const char *name)
{
	return util_name_index(wf_manual_names, WF_M_COUNT, name);
}

void
wf_step_init(struct wf_run *r, struct wf_def *def)
{
	memset(r, 0, sizeof(*r));
	r->def = wf_def_ref(def);
	r->state = def->initial;
	r->status = WF_RUNNING;
	r->end_status = -1;
	r->paused_from = -1;
	snprintf(r->policy, sizeof(r->policy), "not_tracked");
}

void
wf_step_clear(struct wf_run *r)
{
	if (r->def != NULL)
		wf_def_unref(r->def);
	json_decref(r->facts);
	json_decref(r->restart);
	json_decref(r->config);
	r->config = NULL;
	r->def = NULL;
	r->facts = NULL;
	r->restart = NULL;
}

/* ---- facts ---------------------------------------------------------------- */

static const char *
wf_fact_str(const struct wf_run *r, const char *key)
{
	return json_string_value(json_object_get(r->facts, key));
}

static bool
wf_fact_true(const struct wf_run *r, const char *key)
{
	return json_is_true(json_object_get(r->facts, key));
}

/* TikTok (or the creator) cancelled the order. */
static bool
wf_order_cancelled(const struct wf_run *r)
{
	const char *st = wf_fact_str(r, "order_status");

	return order_status_from_tiktok(wf_fact_str(r, "tiktok_status")) == ORDER_CANCELLED ||
	    (st != NULL && strcmp(st, "cancelled") == 0);
}

/* TikTok forbids acting on the order for now (and hides its address). */
static bool
wf_order_held(const struct wf_run *r)
{
	return order_tiktok_on_hold(wf_fact_str(r, "tiktok_status")) ||
	    wf_fact_true(r, "is_on_hold");
}

/* ---- the copy and its history ---------------------------------------------- */

static void
wf_sim_init(struct wf_sim *s, const struct wf_run *r)
{
	memset(s, 0, sizeof(*s));
	s->r = r;
	s->state = r->state;
	s->action = r->action;
	s->status = r->status;
	s->attempt = r->attempt;
	s->seq = r->seq;
	snprintf(s->wait, sizeof(s->wait), "%s", r->wait);
	snprintf(s->pending, sizeof(s->pending), "%s", r->pending);
	s->terminal = r->terminal;
	s->cancel_declined = r->cancel_declined;
	s->ncomp = r->ncomp;
	memcpy(s->comp, r->comp, sizeof(s->comp));
	s->end_status = r->end_status;
	s->paused_from = r->paused_from;
	s->wf_status = -1;
	s->order_status = -1;
	s->due_ms = -1;
	s->lease = true;
	s->hist = json_array();
}

static const struct wf_state *
wf_sim_state(const struct wf_sim *s)
{
	return &s->r->def->states[s->state];
}

/* One history entry: what happened at the current step. */
static json_t *
wf_hist(struct wf_sim *s, const struct wf_step_env *env, const char *outcome)
{
	json_t *e = json_pack("{s:i,s:s,s:s,s:i,s:I}", "seq", s->seq,
	    "step", wf_sim_state(s)->name, "outcome", outcome, "attempt", s->attempt,
	    "started_ms", (json_int_t)env->now_ms);

	json_array_append_new(s->hist, e);
	return e;
}

static json_t *
wf_hist_action(struct wf_sim *s, const struct wf_step_env *env, int a, const char *outcome)
{
	json_t *e = wf_hist(s, env, outcome);

	json_object_set_new(e, "action", json_string(wf_action_info(a)->name));
	return e;
}

/* The copy's state as wf_commit's "then". */
static json_t *
wf_sim_then(const struct wf_sim *s)
{
	json_t *t = json_pack("{s:s,s:i,s:s,s:i,s:i,s:o,s:b,s:b,s:[]}",
	    "step", wf_sim_state(s)->name, "action", s->action, "status",
	    wf_status_name(s->status), "attempt", s->attempt, "seq", s->seq, "hist", json_copy(s->hist),
	    "terminal", s->terminal, "lease", s->lease, "comp");

	for (int i = 0; i < s->ncomp; i++)
		json_array_append_new(json_object_get(t, "comp"),
		    json_string(wf_action_info(s->comp[i])->name));

	json_object_set_new(t, "wait", s->wait[0] ? json_string(s->wait) : json_null());
	json_object_set_new(t, "due_ms", s->due_ms >= 0 ? json_integer(s->due_ms) : json_null());
	json_object_set_new(t, "error", s->error[0] ? json_string(s->error) : json_null());
	json_object_set_new(t, "errors_add", json_integer(s->errors_add));
	if (s->wf_status >= 0)
		json_object_set_new(t, "wf_status", json_string(order_wf_status_name(s->wf_status)));
	if (s->order_status >= 0)
		json_object_set_new(t, "order_status", json_string(order_status_name(s->order_status)));
	if (s->end_status >= 0)
		json_object_set_new(t, "end_status", json_string(wf_status_name(s->end_status)));
	if (s->paused_from >= 0)
		json_object_set_new(t, "paused_from", json_string(wf_status_name(s->paused_from)));
	if (s->final != NULL)
		json_object_set_new(t, "final", json_string(s->final));
	if (s->cancel_declined)
		json_object_set_new(t, "cancel_decision", json_string("declined"));
	if (s->pending[0])
		json_object_set_new(t, "pending_trigger", json_string(s->pending));
	if (s->r->restart != NULL)
		json_object_set(t, "restart", s->r->restart);
	return t;
}

/* The commit item: the run's identity around a "then" (taken). */
static json_t *
wf_item(const struct wf_run *r, const char *effect, json_t *then)
{
	json_t *c = json_pack("{s:s,s:s,s:s,s:o}", "order", r->order_id, "user", r->creator,
	    "tiktok", r->tiktok_id, "then", then);

	if (r->id[0] != '\0') {
		json_object_set_new(c, "wf", json_string(r->id));
		json_object_set_new(c, "expect", json_integer(r->version));
		if (!r->named) {
			/* The rules chose it just now: the row learns which. */
			json_object_set_new(c, "name", json_string(r->def->name));
			json_object_set_new(c, "def_version", json_integer(r->def->version));
		}
	} else {
		json_object_set_new(c, "wf", json_null());
		json_object_set_new(c, "start", json_pack("{s:s,s:i,s:s,s:O*}", "name", r->def->name,
		    "def_version", r->def->version, "step", r->def->states[r->def->initial].name,
		    "config", r->config));
	}
	if (effect != NULL)
		json_object_set_new(c, "effect", json_string(effect));
	return c;
}

/* Park or end: the run gives up its lease and is not due. */
static void
wf_sim_rest(struct wf_sim *s)
{
	s->lease = false;
	s->due_ms = -1;
}

static void wf_key(const struct wf_run *r, int state, int action, int seq, const char *pending,
    char *buf, size_t size);

/* The idempotency key of the step the copy stands at. */
static void
wf_sim_key(const struct wf_sim *s, char *buf, size_t size)
{
	wf_key(s->r, s->state, s->action, s->seq, s->pending, buf, size);
}

/* ---- compensation and endings ------------------------------------------------ */

/* Compensations in reverse order, then end_status. */
static json_t *wf_sim_compensate(struct wf_sim *s, const struct wf_step_env *env);

/* The end of the run in status st (COMPLETED, CANCELLED, FAILED). */
static json_t *
wf_sim_end(struct wf_sim *s, int st)
{
	s->status = st;
	s->final = wf_status_name(st);
	s->wait[0] = '\0';
	if (st == WF_CANCELLED)
		s->wf_status = ORDER_WF_CANCELLED;
	else if (st == WF_COMPLETED)
		s->ncomp = 0;
	s->end_status = -1;
	wf_sim_rest(s);
	return wf_item(s->r, NULL, wf_sim_then(s));
}

/* Start undoing: everything owed, then end as end (CANCELLED or FAILED). */
static json_t *
wf_sim_unwind(struct wf_sim *s, const struct wf_step_env *env, int end, const char *why)
{
	json_object_set_new(wf_hist(s, env, end == WF_CANCELLED ? "cancel" : "compensate"),
	    "reason", json_string(why));
	s->status = WF_COMPENSATING;
	s->end_status = end;
	s->wait[0] = '\0';
	s->pending[0] = '\0';
	s->attempt = 0;
	return wf_sim_compensate(s, env);
}

static json_t *
wf_sim_compensate(struct wf_sim *s, const struct wf_step_env *env)
{
	json_t *then, *c, *at;
	int a;

	char key[128];

	if (s->ncomp == 0)
		return wf_sim_end(s, s->end_status);
	a = s->comp[0];
	at = wf_sim_then(s);
	/* One key per compensation: the run, its place, the undoing action. */
	snprintf(key, sizeof(key), "%s:%d:%s", s->r->id[0] ? s->r->id : "new", s->seq,
	    wf_action_info(a)->name);
	json_object_set_new(wf_hist_action(s, env, a, "compensated"), "key", json_string(key));
	memmove(s->comp, s->comp + 1, (size_t)(s->ncomp - 1) * sizeof(int));
	s->ncomp--;
	s->attempt = 0;
	if (s->ncomp == 0) {
		/* The last one: end in the same commit. */
		c = wf_sim_end(s, s->end_status);
		json_object_set_new(c, "effect", json_string(a == WF_A_CONSUME_STOCK ? "consume" :
		    "release"));
	} else {
		s->due_ms = 0;
		then = wf_sim_then(s);
		c = wf_item(s->r, a == WF_A_CONSUME_STOCK ? "consume" : "release", then);
	}
	json_object_set_new(c, "at", at);
	if (wf_action_info(a)->call >= 0) {
		/* Done outside first: the commit waits for the call. */
		json_object_set_new(c, "then", json_pack("{s:O}", "ok", json_object_get(c, "then")));
		json_object_set_new(c, "effect", json_string("call"));
		json_object_set_new(c, "call", json_pack("{s:s,s:s}", "action", wf_action_info(a)->name,
		    "key", key));
	}
	return c;
}

/* Failed at the current step: in the inbox, nothing compensated (a retry goes on). */
static json_t *
wf_sim_fail(struct wf_sim *s, const struct wf_step_env *env, int a, const char *why)
{
	json_object_set_new(a >= 0 ? wf_hist_action(s, env, a, "failed") : wf_hist(s, env, "failed"),
	    "error", json_string(why));
	s->status = WF_FAILED;
	s->wait[0] = '\0';
	snprintf(s->error, sizeof(s->error), "%s", why);
	s->errors_add = 1;
	wf_sim_rest(s);
	return wf_item(s->r, NULL, wf_sim_then(s));
}

/* Parked until an event of kind. */
static json_t *
wf_sim_wait(struct wf_sim *s, const struct wf_step_env *env, int a, const char *kind)
{
	bool again = s->status == WF_WAITING && strcmp(s->wait, kind) == 0;

	if (!again)
		json_object_set_new(a >= 0 ? wf_hist_action(s, env, a, "wait") : wf_hist(s, env, "wait"),
		    "wait", json_string(kind));
	s->status = WF_WAITING;
	snprintf(s->wait, sizeof(s->wait), "%s", kind);
	wf_sim_rest(s);
	return wf_item(s->r, NULL, wf_sim_then(s));
}

/* ---- states and transitions ----------------------------------------------------- */

static json_t *wf_sim_run(struct wf_sim *s, const struct wf_step_env *env);

/* Enter state t of the definition by trigger. */
static void
wf_sim_enter(struct wf_sim *s, const struct wf_step_env *env, const char *trigger, int t)
{
	const struct wf_state *to = &s->r->def->states[t];
	json_t *e = wf_hist(s, env, "transition");

	json_object_set_new(e, "trigger", json_string(trigger));
	json_object_set_new(e, "to", json_string(to->name));
	s->state = t;
	s->action = 0;
	s->attempt = 0;
	s->seq++;
	s->pending[0] = '\0';
	s->terminal = to->terminal;
	s->wf_status = to->workflow_status;
	if (to->order_status >= 0)
		s->order_status = to->order_status;
}

/* Take trigger in the current state: its alternative, its actions, its target. */
static json_t *
wf_sim_trigger(struct wf_sim *s, const struct wf_step_env *env, const char *trigger)
{
	const struct wf_transition *tr = wf_def_on(s->r->def, s->state, trigger);
	const struct wf_alt *alt = tr != NULL ? wf_def_choose(tr, s->r->facts) : NULL;
	char why[200];

	if (alt == NULL) {
		snprintf(why, sizeof(why), "state %s has no transition of trigger %s that applies to "
		    "this order", wf_sim_state(s)->name, trigger);
		return wf_sim_fail(s, env, -1, why);
	}
	if (alt->nactions > 0 && s->pending[0] == '\0') {
		/* The transition's actions run first; action counts through them. */
		snprintf(s->pending, sizeof(s->pending), "%s", trigger);
		s->action = 0;
		s->attempt = 0;
	}
	if (s->pending[0] != '\0' && s->action < alt->nactions)
		return wf_sim_run(s, env);
	wf_sim_enter(s, env, trigger, alt->target);
	return wf_sim_run(s, env);
}

/* The action of a transition being taken, or of the state's entry; -1 when none is left. */
static int
wf_sim_current_action(const struct wf_sim *s, const struct wf_alt **alt)
{
	const struct wf_state *st = wf_sim_state(s);

	*alt = NULL;
	if (s->pending[0] != '\0') {
		const struct wf_transition *tr = wf_def_on(s->r->def, s->state, s->pending);

		*alt = tr != NULL ? wf_def_choose(tr, s->r->facts) : NULL;
		return *alt != NULL && s->action < (*alt)->nactions ? (*alt)->actions[s->action] : -1;
	}
	return s->action < st->nentry ? st->entry[s->action] : -1;
}

/* An action ended without a trigger: the next one. */
static json_t *
wf_sim_continue(struct wf_sim *s, const struct wf_step_env *env)
{
	s->action++;
	s->attempt = 0;
	return wf_sim_run(s, env);
}

/* validate_order: what the order must be to be fulfilled. */
static json_t *
wf_act_validate(struct wf_sim *s, const struct wf_step_env *env)
{
	const char *tt = wf_fact_str(s->r, "tiktok_status"), *bad = NULL;
	char why[200];

	if (wf_order_held(s->r))
		return wf_sim_wait(s, env, WF_A_VALIDATE_ORDER, "tiktok_hold");
	if (json_integer_value(json_object_get(s->r->facts, "item_count")) < 1 ||
	    json_array_size(json_object_get(s->r->facts, "skus")) == 0)
		bad = "the order has no items";
	else if (tt != NULL && !order_tiktok_before_shipping(tt)) {
		snprintf(why, sizeof(why), "TikTok reports the order %.40s: it was fulfilled or "
		    "cancelled outside this workflow", tt);
		bad = why;
	} else if (wf_fact_str(s->r, "currency") == NULL)
		bad = "the order has no currency";
	if (bad != NULL) {
		json_object_set_new(wf_hist_action(s, env, WF_A_VALIDATE_ORDER, "reject"), "reason",
		    json_string(bad));
		snprintf(s->error, sizeof(s->error), "%s", bad);
		return wf_sim_trigger(s, env, "reject");
	}
	wf_hist_action(s, env, WF_A_VALIDATE_ORDER, "validate");
	return wf_sim_trigger(s, env, "validate");
}

/* Push the compensation of a done action. */
static void
wf_sim_owe(struct wf_sim *s, int a)
{
	int c = wf_action_info(a)->compensation;

	if (c < 0 || s->ncomp == WF_STEP_MAX_COMP)
		return;
	memmove(s->comp + 1, s->comp, (size_t)s->ncomp * sizeof(int));
	s->comp[0] = c;
	s->ncomp++;
}

/*
 * The "then" of a branch past an effect that succeeded: on through the
 * pure steps that follow (to a wait, an end, a retry), so one commit holds
 * the effect and what it leads to; the next effect stops it where it is,
 * to be decided once this commit is in (a call: standing at the call).
 */
static json_t *
wf_sim_go_on(const struct wf_sim *s, const struct wf_step_env *env)
{
	struct wf_sim on = *s;
	json_t *c, *t;

	on.hist = json_deep_copy(s->hist);
	/* What follows the effect was a decision of its own: its own step budget. */
	on.steps = 0;
	c = wf_sim_run(&on, env);
	t = c != NULL && json_object_get(c, "effect") == NULL ? json_object_get(c, "then") : NULL;
	/* A call next: stand at it, so this commit already holds the steps up to it. */
	if (c != NULL && t == NULL && strcmp(json_string_value(json_object_get(c, "effect")),
	    "call") == 0 && json_object_get(c, "at") != NULL)
		t = json_object_get(c, "at");
	t = t != NULL && json_object_get(t, "step") != NULL ? json_incref(t) : wf_sim_then(s);
	json_decref(c);
	json_decref(on.hist);
	return t;
}

/* The branch where action a (keyed key) succeeded: owed its compensation, on to the next. */
static void
wf_sim_done(struct wf_sim *s, const struct wf_step_env *env, int a, const char *key)
{
	json_object_set_new(wf_hist_action(s, env, a, "done"), "key", json_string(key));
	wf_sim_owe(s, a);
	s->action++;
	s->attempt = 0;
	s->status = WF_RUNNING;
	s->wait[0] = '\0';
	s->due_ms = 0;
	s->error[0] = '\0';
}

/* reserve_stock: one commit per outcome; the decision stops there. */
static json_t *
wf_act_reserve(struct wf_sim *s, const struct wf_step_env *env)
{
	struct wf_sim ok = *s, no = *s, un = *s;
	json_t *alts, *c, *at;
	char key[128];

	if (wf_order_held(s->r))
		return wf_sim_wait(s, env, WF_A_RESERVE_STOCK, "tiktok_hold");
	if (env->inventory_open) {
		/* The breaker is open: wait it out without using an attempt. */
		wf_hist_action(s, env, WF_A_RESERVE_STOCK, "breaker_open");
		s->status = WF_RUNNING;
		s->wait[0] = '\0';
		s->due_ms = env->inventory_wait_ms > 0 ? env->inventory_wait_ms : 1000;
		return wf_item(s->r, NULL, wf_sim_then(s));
	}
	wf_sim_key(s, key, sizeof(key));
	at = wf_sim_then(s);
	/* Each outcome gets its own copy of the history so far. */
	ok.hist = json_deep_copy(s->hist);
	no.hist = json_deep_copy(s->hist);
	un.hist = json_deep_copy(s->hist);
	wf_sim_done(&ok, env, WF_A_RESERVE_STOCK, key);
	alts = json_pack("{s:o}", "ok", wf_sim_go_on(&ok, env));
	c = wf_sim_wait(&no, env, WF_A_RESERVE_STOCK, "stock");
	json_object_set(alts, "nostock", json_object_get(c, "then"));
	json_decref(c);
	c = wf_sim_fail(&un, env, WF_A_RESERVE_STOCK, "a SKU of the order has no inventory "
	    "row, and this creator's untracked SKUs need attention");
	json_object_set(alts, "untracked", json_object_get(c, "then"));
	json_decref(c);
	json_decref(ok.hist);
	json_decref(no.hist);
	json_decref(un.hist);
	c = wf_item(s->r, "reserve", alts);
	json_object_set_new(c, "policy", json_string(s->r->policy));
	json_object_set_new(c, "at", at);
	return c;
}

/* release_stock, consume_stock: the effect, then the next action. */
static json_t *
wf_act_settle(struct wf_sim *s, const struct wf_step_env *env, int a)
{
	char key[128];
	json_t *at = wf_sim_then(s), *c;

	wf_sim_key(s, key, sizeof(key));
	json_object_set_new(wf_hist_action(s, env, a, "done"), "key", json_string(key));
	s->action++;
	s->attempt = 0;
	s->status = WF_RUNNING;
	s->due_ms = 0;
	s->error[0] = '\0';
	/* Nothing is left to release once the stock shipped or went back. */
	s->ncomp = 0;
	c = wf_item(s->r, a == WF_A_CONSUME_STOCK ? "consume" : "release", wf_sim_go_on(s, env));
	json_object_set_new(c, "at", at);
	return c;
}

/*
 * An action done outside the database (shipping): the decision stops at
 * it; the engine runs the call and then commits the "ok" branch, which
 * goes on through the pure steps after it.
 */
static bool wf_wait_over(const struct wf_run *r, int a);

/*
 * A shipping step of an order TikTok fulfills (FBT): the seller cannot
 * ship it, so there is nothing to buy or call; the shipment is TikTok's,
 * and ship_package waits for TikTok to report it as await_shipment does.
 */
static json_t *
wf_act_by_tiktok(struct wf_sim *s, const struct wf_step_env *env, int a)
{
	if (a != WF_A_SHIP_PACKAGE) {
		wf_hist_action(s, env, a, "by_tiktok");
		return wf_sim_continue(s, env);
	}
	if (!wf_wait_over(s->r, WF_A_AWAIT_SHIPMENT))
		return wf_sim_wait(s, env, a, "shipment");
	json_object_set_new(wf_hist_action(s, env, a, "tiktok_event"), "tiktok_status",
	    json_string(wf_fact_str(s->r, "tiktok_status")));
	s->status = WF_RUNNING;
	s->wait[0] = '\0';
	return wf_sim_continue(s, env);
}

static json_t *
wf_act_call(struct wf_sim *s, const struct wf_step_env *env, int a)
{
	struct wf_sim ok = *s;
	json_t *c, *at;
	char key[128];

	if (wf_order_held(s->r))
		return wf_sim_wait(s, env, a, "tiktok_hold");
	if (wf_fact_true(s->r, "fulfilled_by_tiktok") && s->status != WF_COMPENSATING)
		return wf_act_by_tiktok(s, env, a);
	wf_sim_key(s, key, sizeof(key));
	at = wf_sim_then(s);
	ok.hist = json_deep_copy(s->hist);
	wf_sim_done(&ok, env, a, key);
	c = wf_item(s->r, "call", json_pack("{s:o}", "ok", wf_sim_go_on(&ok, env)));
	json_decref(ok.hist);
	json_object_set_new(c, "call", json_pack("{s:s,s:s}", "action", wf_action_info(a)->name,
	    "key", key));
	json_object_set_new(c, "at", at);
	return c;
}

/* The carrier's word that the package will not arrive, or NULL. */
static const char *
wf_carrier_gave_up(const struct wf_run *r)
{
	static const char *const bad[] = { "return_to_sender", "failure", "error", "cancelled",
	    "canceled", NULL };
	const char *st = wf_fact_str(r, "carrier_status");

	for (int i = 0; st != NULL && bad[i] != NULL; i++)
		if (strcmp(st, bad[i]) == 0)
			return st;
	return NULL;
}

/* An await action whose event TikTok's status already reports. */
static bool
wf_wait_over(const struct wf_run *r, int a)
{
	int st = order_status_from_tiktok(wf_fact_str(r, "tiktok_status"));

	if (a == WF_A_AWAIT_SHIPMENT)
		return st == ORDER_PROCESSING || st == ORDER_SHIPPED || st == ORDER_DELIVERED;
	if (a == WF_A_AWAIT_DELIVERY)
		return st == ORDER_DELIVERED || wf_fact_true(r, "carrier_delivered");
	return false;
}

/* Run action a of the current state (or transition). */
static json_t *
wf_sim_action(struct wf_sim *s, const struct wf_step_env *env, int a)
{
	const struct wf_action_info *ai = wf_action_info(a);

	switch (a) {
	case WF_A_VALIDATE_ORDER:
		return wf_act_validate(s, env);
	case WF_A_RESERVE_STOCK:
		return wf_act_reserve(s, env);
	case WF_A_RELEASE_STOCK:
	case WF_A_CONSUME_STOCK:
		return wf_act_settle(s, env, a);
	case WF_A_CREATE_SHIPPING_LABEL:
	case WF_A_SHIP_PACKAGE:
	case WF_A_UPDATE_TIKTOK_STATUS:
	case WF_A_VOID_LABEL:
		return wf_act_call(s, env, a);
	default:
		/* await_*: park until the event, which ends it with its trigger. */
		if (wf_wait_over(s->r, a)) {
			/* TikTok or the carrier reports it already. */
			bool by_tiktok = a != WF_A_AWAIT_DELIVERY ||
			    order_status_from_tiktok(wf_fact_str(s->r, "tiktok_status")) ==
			    ORDER_DELIVERED;
			json_t *e = wf_hist_action(s, env, a, by_tiktok ? "tiktok_event" :
			    "carrier_event");

			json_object_set_new(e, "tiktok_status",
			    json_string(wf_fact_str(s->r, "tiktok_status")));
			if (wf_fact_str(s->r, "carrier_status") != NULL)
				json_object_set_new(e, "carrier_status",
				    json_string(wf_fact_str(s->r, "carrier_status")));
			s->status = WF_RUNNING;
			s->wait[0] = '\0';
			return wf_sim_trigger(s, env, ai->skip_trigger);
		}
		if (a == WF_A_AWAIT_DELIVERY && wf_carrier_gave_up(s->r) != NULL) {
			char why[120];

			snprintf(why, sizeof(why), "the carrier reports %s: the package is not being "
			    "delivered", wf_carrier_gave_up(s->r));
			return wf_sim_fail(s, env, a, why);
		}
		return wf_sim_wait(s, env, a, ai->wait_kind);
	}
}

/* Go on from the copy's place until something must be committed. */
static json_t *
wf_sim_run(struct wf_sim *s, const struct wf_step_env *env)
{
	const struct wf_state *st = wf_sim_state(s);
	const struct wf_alt *alt;
	int a;

	if (++s->steps > WF_STEP_MAX_STEPS)
		return wf_sim_fail(s, env, -1, "the definition loops without waiting or committing");
	if (s->pending[0] == '\0' && st->terminal && s->action >= st->nentry) {
		if (!st->failure)
			return wf_sim_end(s, WF_COMPLETED);
		s->end_status = WF_FAILED;
		if (s->error[0] == '\0')
			snprintf(s->error, sizeof(s->error), "ended in state %s", st->name);
		s->status = WF_COMPENSATING;
		return wf_sim_compensate(s, env);
	}
	a = wf_sim_current_action(s, &alt);
	if (a >= 0)
		return wf_sim_action(s, env, a);
	if (s->pending[0] != '\0') {
		char trigger[WF_DEF_NAME_MAX + 1];

		snprintf(trigger, sizeof(trigger), "%s", s->pending);
		if (alt == NULL)
			return wf_sim_fail(s, env, -1, "the transition being taken no longer applies");
		wf_sim_enter(s, env, trigger, alt->target);
		return wf_sim_run(s, env);
	}
	return wf_sim_trigger(s, env, WF_DEF_DONE);
}

/* The gates every decision passes first; NULL when none stops the run. */
static json_t *
wf_sim_gates(struct wf_sim *s, const struct wf_step_env *env)
{
	int ws = wf_sim_state(s)->workflow_status;
	bool before_ship = ws == ORDER_WF_NEW || ws == ORDER_WF_VALIDATED ||
	    ws == ORDER_WF_INVENTORY_RESERVED || ws == ORDER_WF_READY_TO_SHIP;

	if (s->status == WF_COMPENSATING)
		return wf_sim_compensate(s, env);
	if (wf_order_cancelled(s->r) && before_ship)
		return wf_sim_unwind(s, env, WF_CANCELLED, "the order was cancelled");
	if (s->status == WF_FAILED || s->status == WF_PAUSED)
		return NULL;
	if (wf_fact_true(s->r, "buyer_request_cancel") && before_ship && !s->cancel_declined &&
	    !s->terminal)
		return wf_sim_wait(s, env, -1, WF_WAIT_CANCEL);
	return NULL;
}

json_t *
wf_step_next(const struct wf_run *r, const struct wf_step_env *env)
{
	struct wf_sim s;
	json_t *c;

	if (r->status == WF_COMPLETED || r->status == WF_CANCELLED)
		return NULL;
	wf_sim_init(&s, r);
	if ((c = wf_sim_gates(&s, env)) == NULL) {
		if (s.status == WF_FAILED || s.status == WF_PAUSED) {
			/* Only a person moves it on; woken for nothing: rest again. */
			wf_sim_rest(&s);
			c = wf_item(r, NULL, wf_sim_then(&s));
			/* Not a step: last_error and error_count stay (wf_commit keeps an absent error). */
			json_object_del(json_object_get(c, "then"), "error");
		} else if (s.status == WF_WAITING && strcmp(s.wait, WF_WAIT_CANCEL) == 0) {
			/* The buyer withdrew the request: go on where it was. */
			wf_hist(&s, env, "cancel_withdrawn");
			s.status = WF_RUNNING;
			s.wait[0] = '\0';
			c = wf_sim_run(&s, env);
		} else {
			/* Running, or a wait the facts may have ended: the action again. */
			c = wf_sim_run(&s, env);
		}
	}
	json_decref(s.hist);
	return c;
}

/*
 * Where the failed item's effect stood: the run as committed, moved to the
 * item's "at" (the decision's state right before the effect), with the
 * history of the steps the decision took before it.
 */
static void
wf_sim_at(struct wf_sim *s, struct wf_run *tmp, const struct wf_run *r, json_t *item)
{
	json_t *at = json_object_get(item, "at"), *wrap;
	const char *ws, *os;

	*tmp = *r;
	if (at == NULL) {
		wf_sim_init(s, r);
		return;
	}
	wrap = json_pack("{s:O}", "then", at);
	wf_step_committed(tmp, wrap, NULL, r->version);
	tmp->named = r->named;
	json_decref(wrap);
	wf_sim_init(s, tmp);
	json_decref(s->hist);
	s->hist = json_deep_copy(json_object_get(at, "hist"));
	ws = json_string_value(json_object_get(at, "wf_status"));
	os = json_string_value(json_object_get(at, "order_status"));
	s->wf_status = ws != NULL ? order_wf_status_parse(ws) : -1;
	s->order_status = os != NULL ? order_status_parse(os) : -1;
}

json_t *
wf_step_effect_failed(const struct wf_run *r, const struct wf_step_env *env, const char *error,
    json_t *item)
{
	struct wf_sim s;
	struct wf_run tmp;
	const struct wf_alt *alt;
	int a, pol;
	json_t *c, *e;
	int64_t delay;

	wf_sim_at(&s, &tmp, r, item);
	a = wf_sim_current_action(&s, &alt);
	if (s.status == WF_COMPENSATING || a < 0) {
		/* Compensations are owed whatever happens: again, capped, forever. */
		a = s.ncomp > 0 ? s.comp[0] : WF_A_RELEASE_STOCK;
	}
	pol = wf_action_info(a)->policy;
	s.attempt++;
	if (s.status != WF_COMPENSATING && backoff_exhausted(&env->policy[pol], s.attempt)) {
		char why[300];

		snprintf(why, sizeof(why), "%s failed %d times: %s", wf_action_info(a)->name,
		    s.attempt, error);
		c = wf_sim_fail(&s, env, a, why);
	} else {
		delay = backoff_delay(&env->policy[pol], s.attempt, env->rnd);
		e = wf_hist_action(&s, env, a, "retry");
		json_object_set_new(e, "error", json_string(error));
		json_object_set_new(e, "delay_ms", json_integer(delay));
		snprintf(s.error, sizeof(s.error), "%s", error);
		s.status = s.status == WF_COMPENSATING ? WF_COMPENSATING : WF_RUNNING;
		s.wait[0] = '\0';
		s.due_ms = delay;
		c = wf_item(&tmp, NULL, wf_sim_then(&s));
	}
	if (json_object_get(item, "audit") != NULL)
		json_object_set(c, "audit", json_object_get(item, "audit"));
	json_decref(s.hist);
	return c;
}

json_t *
wf_step_call_failed(const struct wf_run *r, const struct wf_step_env *env, json_t *item,
    enum wf_call_result how, const char *error, int64_t delay_ms)
{
	struct wf_sim s;
	struct wf_run tmp;
	const struct wf_alt *alt;
	json_t *c, *t;
	int a;

	if (how == WF_CALL_RETRY) {
		c = wf_step_effect_failed(r, env, error, item);
		t = json_object_get(c, "then");
		/* The server asked for more time than the policy gives: grant it. */
		if (delay_ms > 0 && json_is_integer(json_object_get(t, "due_ms")) &&
		    json_integer_value(json_object_get(t, "due_ms")) < delay_ms)
			json_object_set_new(t, "due_ms", json_integer(delay_ms));
		return c;
	}
	wf_sim_at(&s, &tmp, r, item);
	a = wf_sim_current_action(&s, &alt);
	if (s.status == WF_COMPENSATING || a < 0)
		a = s.ncomp > 0 ? s.comp[0] : WF_A_VOID_LABEL;
	if (how == WF_CALL_WAIT) {
		json_object_set_new(wf_hist_action(&s, env, a, "breaker_open"), "error",
		    json_string(error));
		s.wait[0] = '\0';
		s.due_ms = delay_ms > 0 ? delay_ms : 1000;
		c = wf_item(&tmp, NULL, wf_sim_then(&s));
	} else if (s.status == WF_COMPENSATING) {
		/* Still owed: a person retries it or skips it (wf_sim_manual). */
		json_object_set_new(wf_hist_action(&s, env, a, "failed"), "error", json_string(error));
		s.status = WF_FAILED;
		snprintf(s.error, sizeof(s.error), "%s", error);
		s.errors_add = 1;
		wf_sim_rest(&s);
		c = wf_item(&tmp, NULL, wf_sim_then(&s));
	} else {
		c = wf_sim_fail(&s, env, a, error);
	}
	if (json_object_get(item, "audit") != NULL)
		json_object_set(c, "audit", json_object_get(item, "audit"));
	json_decref(s.hist);
	return c;
}

void
wf_step_call_done(json_t *item, const char *detail)
{
	json_t *ok = json_incref(json_object_get(json_object_get(item, "then"), "ok"));
	const char *key = json_string_value(json_object_get(json_object_get(item, "call"), "key"));
	json_t *e;
	size_t i;

	json_object_set_new(item, "then", ok);
	json_array_foreach(json_object_get(ok, "hist"), i, e)
		if (key != NULL && detail != NULL && detail[0] != '\0' &&
		    json_equal(json_object_get(e, "key"), json_object_get(json_object_get(item,
		    "call"), "key")))
			json_object_set_new(e, "detail", json_string(detail));
}

/* ---- after a commit ------------------------------------------------------------ */

static int
wf_name_index(const struct wf_def *d, const char *name)
{
	int i = name != NULL ? wf_def_state(d, name) : -1;

	return i >= 0 ? i : 0;
}

void
wf_step_committed(struct wf_run *r, json_t *c, const char *outcome, int version)
{
	json_t *then = json_object_get(c, "then"), *t;
	const char *s;

	t = json_object_get(c, "effect") != NULL && json_object_get(then, "step") == NULL ?
	    json_object_get(then, outcome != NULL ? outcome : "ok") : then;
	r->state = wf_name_index(r->def, json_string_value(json_object_get(t, "step")));
	r->action = (int)json_integer_value(json_object_get(t, "action"));
	r->status = wf_status_parse(json_string_value(json_object_get(t, "status")));
	s = json_string_value(json_object_get(t, "wait"));
	snprintf(r->wait, sizeof(r->wait), "%s", s != NULL ? s : "");
	r->attempt = (int)json_integer_value(json_object_get(t, "attempt"));
	r->seq = (int)json_integer_value(json_object_get(t, "seq"));
	r->terminal = json_is_true(json_object_get(t, "terminal"));
	r->cancel_declined = json_object_get(t, "cancel_decision") != NULL;
	s = json_string_value(json_object_get(t, "pending_trigger"));
	snprintf(r->pending, sizeof(r->pending), "%s", s != NULL ? s : "");
	s = json_string_value(json_object_get(t, "end_status"));
	r->end_status = s != NULL ? wf_status_parse(s) : -1;
	s = json_string_value(json_object_get(t, "paused_from"));
	r->paused_from = s != NULL ? wf_status_parse(s) : -1;
	r->ncomp = 0;
	for (size_t i = 0; i < json_array_size(json_object_get(t, "comp")) &&
	    r->ncomp < WF_STEP_MAX_COMP; i++) {
		int a = wf_action_find(json_string_value(json_array_get(json_object_get(t, "comp"), i)));

		if (a >= 0)
			r->comp[r->ncomp++] = a;
	}
	r->version = version;
	r->named = true;
}

/* ---- manual actions ----------------------------------------------------------- */

unsigned
wf_step_allowed(const struct wf_run *r)
{
	unsigned b = 0;

	switch (r->status) {
	case WF_RUNNING:
		b = 1u << WF_M_CANCEL | 1u << WF_M_PAUSE;
		break;
	case WF_WAITING:
		if (strcmp(r->wait, WF_WAIT_CANCEL) == 0)
			b = 1u << WF_M_APPROVE | 1u << WF_M_REJECT;
		else if (strcmp(r->wait, "approval") == 0)
			b = 1u << WF_M_APPROVE | 1u << WF_M_REJECT | 1u << WF_M_CANCEL |
			    1u << WF_M_PAUSE;
		else
			b = 1u << WF_M_SKIP | 1u << WF_M_CANCEL | 1u << WF_M_PAUSE;
		break;
	case WF_PAUSED:
		b = 1u << WF_M_RESUME | 1u << WF_M_CANCEL;
		break;
	case WF_FAILED:
		b = r->terminal && !(r->end_status >= 0 && r->ncomp > 0) ? 1u << WF_M_CANCEL :
		    1u << WF_M_RETRY | 1u << WF_M_SKIP | 1u << WF_M_CANCEL;
		break;
	default:
		break;
	}
	return b;
}

void
wf_step_allowed_json(unsigned set, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "[");

	for (int m = 0; m < WF_M_COUNT && len < size; m++)
		if (set & (1u << m))
			len += (size_t)snprintf(buf + len, size - len, "%s\"%s\"", len > 1 ? "," : "",
			    wf_manual_names[m]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* Skip: the current action ends as if it had succeeded. */
static json_t *
wf_sim_skip(struct wf_sim *s, const struct wf_step_env *env)
{
	const struct wf_alt *alt;
	int a = wf_sim_current_action(s, &alt);
	const char *trigger;

	s->status = WF_RUNNING;
	s->wait[0] = '\0';
	s->error[0] = '\0';
	s->lease = true;
	if (a < 0)
		return wf_sim_run(s, env);
	wf_hist_action(s, env, a, "skipped");
	trigger = wf_action_info(a)->skip_trigger;
	if (trigger != NULL && s->pending[0] == '\0')
		return wf_sim_trigger(s, env, trigger);
	return wf_sim_continue(s, env);
}

/* Approve or reject at a wait: the decision's trigger, or the buyer's cancel request. */
static json_t *
wf_sim_decide(struct wf_sim *s, const struct wf_step_env *env, bool approve)
{
	if (strcmp(s->wait, WF_WAIT_CANCEL) == 0) {
		if (approve)
			return wf_sim_unwind(s, env, WF_CANCELLED, "the buyer's cancellation was accepted");
		wf_hist(s, env, "cancel_declined");
		s->cancel_declined = true;
		s->status = WF_RUNNING;
		s->wait[0] = '\0';
		return wf_sim_run(s, env);
	}
	s->status = WF_RUNNING;
	s->wait[0] = '\0';
	return wf_sim_trigger(s, env, approve ? "approve" : "reject");
}

/* The decision of manual action m on the copy. */
static json_t *
wf_sim_manual(struct wf_sim *s, const struct wf_step_env *env, int m)
{
	if (s->status == WF_FAILED && s->end_status >= 0 && s->ncomp > 0 &&
	    (m == WF_M_RETRY || m == WF_M_SKIP)) {
		/* A compensation failed: again, or (skip) done by the person instead. */
		if (m == WF_M_SKIP) {
			wf_hist_action(s, env, s->comp[0], "skipped");
			memmove(s->comp, s->comp + 1, (size_t)(s->ncomp - 1) * sizeof(int));
			s->ncomp--;
		}
		s->status = WF_COMPENSATING;
		s->attempt = 0;
		s->error[0] = '\0';
		s->lease = true;
		return wf_sim_compensate(s, env);
	}
	switch (m) {
	case WF_M_RETRY:
		s->status = WF_RUNNING;
		s->attempt = 0;
		s->error[0] = '\0';
		return wf_sim_run(s, env);
	case WF_M_SKIP:
		return wf_sim_skip(s, env);
	case WF_M_CANCEL:
		return wf_sim_unwind(s, env, WF_CANCELLED, "cancelled by the creator");
	case WF_M_PAUSE:
		s->paused_from = s->status;
		s->status = WF_PAUSED;
		wf_sim_rest(s);
		return wf_item(s->r, NULL, wf_sim_then(s));
	case WF_M_RESUME:
		s->status = s->paused_from >= 0 ? s->paused_from : WF_RUNNING;
		s->paused_from = -1;
		/* A wait may have ended while paused: its action again, as a wake does. */
		return wf_sim_run(s, env);
	default:
		return wf_sim_decide(s, env, m == WF_M_APPROVE);
	}
}

json_t *
wf_step_manual(const struct wf_run *r, const struct wf_step_env *env, int m, const char *actor,
    const char *reason)
{
	struct wf_sim s;
	json_t *c, *e;

	if (m < 0 || m >= WF_M_COUNT || !(wf_step_allowed(r) & (1u << m)))
		return NULL;
	wf_sim_init(&s, r);
	e = wf_hist(&s, env, "manual");
	json_object_set_new(e, "manual", json_string(wf_manual_names[m]));
	json_object_set_new(e, "by", json_string(actor));
	if (reason != NULL)
		json_object_set_new(e, "reason", json_string(reason));
	c = wf_sim_manual(&s, env, m);
	json_object_set_new(c, "audit", json_pack("{s:s,s:s,s:{s:s,s:i},s:{s:s,s:s*}}",
	    "action", "workflow.manual", "actor", actor, "before", "status",
	    wf_status_name(r->status), "version", r->version, "after", "manual",
	    wf_manual_names[m], "reason", reason));
	json_decref(s.hist);
	return c;
}

/* "<id>:<seq>:<action>" of the action at (state, action, pending) of r. */
static void
wf_key(const struct wf_run *r, int state, int action, int seq, const char *pending, char *buf,
    size_t size)
{
	const struct wf_state *st = &r->def->states[state];
	int a = -1;

	if (pending[0] != '\0') {
		const struct wf_transition *tr = wf_def_on(r->def, state, pending);
		const struct wf_alt *alt = tr != NULL ? wf_def_choose(tr, r->facts) : NULL;

		if (alt != NULL && action < alt->nactions)
			a = alt->actions[action];
	} else if (action < st->nentry) {
		a = st->entry[action];
	}
	snprintf(buf, size, "%s:%d:%s", r->id[0] ? r->id : "new", seq,
	    a >= 0 ? wf_action_info(a)->name : st->name);
}

void
wf_step_key(const struct wf_run *r, char *buf, size_t size)
{
	wf_key(r, r->state, r->action, r->seq, r->pending, buf, size);
}
