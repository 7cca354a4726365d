/*
 * wf_def: workflow definitions, their validation, the built-in templates
 * and the creators' rules that pick a workflow for an order.
 *
 * A definition is the state machine of the specification, as JSON:
 *
 *   {"initial": "new",                          optional, default "new"
 *    "description": "...",                      optional, <= 500 bytes
 *    "states": {
 *      "<state>": {
 *        "workflow_status": "validated",        required unless the state's name is one
 *        "order_status": "processing",          optional: set on entry where the order
 *                                               state machine allows it
 *        "description": "...",                  optional
 *        "entry": ["validate_order", ...],      optional: actions run on entry, in order
 *        "on": {                                absent or {} in a terminal state
 *          "<trigger>": {"target": "<state>", "if": <condition>, "actions": [...]}
 *                    or [ {"target": ..., "if": ...}, ..., {"target": ...} ]
 *        }}}}
 *
 * Entering a state runs its entry actions in order.  An action ends in
 * one of: continue (the next entry action), a trigger (the transition of
 * that name is taken at once), wait (the run parks until an event), retry
 * or fail.  When every entry action has continued, the trigger "done"
 * fires.  A trigger's transition is one object or a list of alternatives:
 * the first whose "if" holds (wf_cond, over the order's facts) is taken;
 * its "actions" run before the target is entered (only actions that
 * neither wait nor emit triggers may stand there).  A state without
 * transitions is terminal; its workflow_status must be completed or failed
 * (failed: the workflow failed, and the compensations of what it did run).
 *
 * Validation (wf_def_parse) refuses, naming the JSON path: an unknown
 * field, action, condition field or operator, or state; a trigger that no
 * entry action of the state can emit (other than "done"); a trigger an
 * entry action can emit that has no transition; a missing "done" where
 * the entry actions can all continue; an action that emits triggers that
 * is not the last entry; an alternative after one without "if"; a state
 * unreachable from the initial one; a state from which no terminal state
 * can be reached; no terminal state; a terminal state whose
 * workflow_status is not completed or failed; workflow_status cancelled
 * (the engine's mark of a cancelled workflow); a waiting or triggering
 * action among a transition's actions or a terminal state's entry actions;
 * a limit passed (WF_DEF_MAX_*).
 *
 * Rules pick the workflow of a new order:
 *
 *   {"rules": [{"name": "big orders", "priority": 10, "if": <condition>,
 *               "workflow": "manual_review"}, ...],
 *    "default": "standard_fulfillment"}          optional, that is the default
 *
 * The rule with the highest priority whose "if" holds wins (ties: the
 * earlier one in the list); a rule without "if" always holds; none: the
 * default.  "workflow" must name a built-in template or one of the
 * creator's definitions (the caller passes the names it knows).
 *
 * Pure: no I/O, no clock, thread-safe (a parsed definition is immutable
 * and reference counted).  Called by the engine (wf), the REST handlers of
 * /api/workflows and the unit tests.
 */
#ifndef ORDERFLOW_WF_DEF_H
#define ORDERFLOW_WF_DEF_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "orderflow/wf_cond.h"

#define WF_DEF_MAX_STATES	64	/* states of one definition */
#define WF_DEF_MAX_ACTIONS	16	/* actions of one entry list or one transition */
#define WF_DEF_MAX_TRIGGERS	16	/* transitions ("on" keys) of one state */
#define WF_DEF_MAX_ALTS		8	/* alternatives of one transition */
#define WF_DEF_NAME_MAX		64	/* bytes of a state, trigger or workflow name: [a-z][a-z0-9_]* */
#define WF_DEF_DESC_MAX		500	/* bytes of a description */
#define WF_RULES_MAX		100	/* rules of one creator */
#define WF_DEF_DONE		"done"	/* the trigger fired when every entry action continued */

/* The actions a definition may name; the engine runs them (wf_step.c, wf.c, ship.c). */
enum wf_action {
	WF_A_VALIDATE_ORDER,	/* check the order; emits validate or reject; waits while TikTok holds it */
	WF_A_RESERVE_STOCK,	/* reserve every SKU or none; waits for stock; compensated by release_stock */
	WF_A_RELEASE_STOCK,	/* release the order's active reservations */
	WF_A_CONSUME_STOCK,	/* turn reservations into shipped stock (on_hand and reserved down) */
	WF_A_AWAIT_APPROVAL,	/* wait for the creator: emits approve or reject */
	WF_A_AWAIT_SHIPMENT,	/* wait for the shipment (the shipping integration): emits ship */
	WF_A_AWAIT_DELIVERY,	/* wait for the delivery: emits deliver */
	WF_A_CREATE_SHIPPING_LABEL, /* seller shipping: buy the label; compensated by void_label */
	WF_A_SHIP_PACKAGE,	/* ship every package on TikTok (with the label's tracking number) */
	WF_A_UPDATE_TIKTOK_STATUS, /* TikTok must report the order shipped */
	WF_A_VOID_LABEL,	/* refund the labels bought and not shipped */
	WF_A_COUNT
};

/* Which retry policy an action's failures follow. */
enum wf_policy {
	WF_POLICY_WORKFLOW,	/* workflow.retry_*: 3 attempts, 2 s, x1.5, cap 60 s */
	WF_POLICY_INVENTORY,	/* inventory.retry_*: 2 attempts, 500 ms, x2, cap 5 s */
	WF_POLICY_SHIPPING,	/* shipping.retry_*: 6 attempts, 2 s, x2, cap 2 min */
	WF_POLICY_COUNT
};

/* What the engine and the validator know of an action. */
struct wf_action_info {
	const char	*name;		/* as written in definitions */
	const char	*emits[3];	/* triggers it may end with, NULL-terminated; none: it continues */
	const char	*wait_kind;	/* the event it may park for ("stock", "approval"...), or NULL */
	const char	*skip_trigger;	/* what the manual "skip" ends it with; NULL: it continues */
	int		compensation;	/* enum wf_action undoing it, or -1 */
	enum wf_policy	policy;		/* which retry settings its failures follow */
	int		call;		/* enum ship_step it runs outside the database, or -1 */
	const char	*doc;		/* one line for orderflowd(8) */
};

/* NULL when a is out of range. */
const struct wf_action_info *wf_action_info(int a);
/* The action of a name, or -1. */
int wf_action_find(const char *name);

/* One alternative of a transition. */
struct wf_alt {
	struct wf_cond	*cond;		/* NULL: always */
	int		target;		/* state index */
	int		nactions;	/* entries of actions */
	int		actions[WF_DEF_MAX_ACTIONS];	/* enum wf_action */
};

/* The transition taken on one trigger. */
struct wf_transition {
	char		trigger[WF_DEF_NAME_MAX + 1];
	int		nalts;		/* 1..WF_DEF_MAX_ALTS */
	struct wf_alt	alts[WF_DEF_MAX_ALTS];
};

struct wf_state {
	char		name[WF_DEF_NAME_MAX + 1];	/* its key in "states" */
	int		workflow_status;	/* enum order_wf_status */
	int		order_status;	/* enum order_status set on entry, or -1 */
	int		nentry;		/* entries of entry */
	int		entry[WF_DEF_MAX_ACTIONS];	/* enum wf_action */
	int		ntrans;		/* entries of trans */
	struct wf_transition *trans;	/* ntrans of them */
	bool		terminal;	/* no transitions */
	bool		failure;	/* terminal with workflow_status failed */
};

/* A parsed, validated definition: immutable once made; share it with wf_def_ref. */
struct wf_def {
	atomic_int	refs;		/* holders; freed at 0 */
	char		name[WF_DEF_NAME_MAX + 1];
	int		version;	/* 0 for a built-in template */
	bool		builtin;
	int		initial;	/* state index */
	int		nstates;	/* entries of states */
	struct wf_state	*states;
	json_t		*doc;		/* the definition as given (owned), for GET */
};

/*
 * Parse and validate a definition document (borrowed).  On error returns
 * NULL with err set (path relative to "$", the document's root).  name and
 * version are recorded in the result (name must be a valid workflow name).
 */
struct wf_def *wf_def_parse(json_t *doc, const char *name, int version, struct wf_err *err);
struct wf_def *wf_def_ref(struct wf_def *d);
void wf_def_unref(struct wf_def *d);

/* True when s is a valid state, trigger or workflow name. */
bool wf_def_name_ok(const char *s);
/* The state index of a name, or -1. */
int wf_def_state(const struct wf_def *d, const char *name);
/* The transition of trigger in state s, or NULL. */
const struct wf_transition *wf_def_on(const struct wf_def *d, int s, const char *trigger);
/* The alternative of t taken for facts: the first whose condition holds, or NULL. */
const struct wf_alt *wf_def_choose(const struct wf_transition *t, json_t *facts);

/*
 * The built-in templates: standard_fulfillment, manual_review, digital.
 * They are data in wf_def.c (a table) turned into definition documents and
 * parsed by wf_def_parse like any other, once, on first use (thread-safe);
 * the table holds a reference for the life of the process, so callers may
 * ref and unref them like any other.  NULL for another name.
 */
struct wf_def *wf_def_builtin(const char *name);
/* The names of the built-in templates, NULL-terminated. */
const char *const *wf_def_builtin_names(void);

/* A creator's parsed rules. */
struct wf_rule {
	char		name[WF_DEF_NAME_MAX * 2 + 1];	/* free text, <= 128 bytes */
	long		priority;	/* -1000000..1000000, default 0 */
	struct wf_cond	*cond;		/* NULL: always */
	char		workflow[WF_DEF_NAME_MAX + 1];
};

struct wf_rules {
	int		nrules;
	struct wf_rule	*rules;		/* sorted: priority descending, then document order */
	char		fallback[WF_DEF_NAME_MAX + 1];	/* "default", standard_fulfillment if absent */
};

/*
 * Parse and validate a rules document (borrowed).  known: the workflow
 * names the creator may use besides the built-ins (NULL-terminated, may be
 * NULL).  NULL with err set on error.
 */
struct wf_rules *wf_rules_parse(json_t *doc, const char *const *known, struct wf_err *err);
void wf_rules_free(struct wf_rules *r);
/* The workflow name chosen for facts (never NULL). */
const char *wf_rules_choose(const struct wf_rules *r, json_t *facts);

#endif
