/*
 * wf_step: what a workflow run does next, decided without I/O.
 *
 * A run (struct wf_run) stands at a state of its definition, at an entry
 * action of it, with a status.  wf_step_next drives it as far as it can
 * go without the database: it checks the gates (TikTok cancelled the
 * order: cancel and compensate; the buyer asked to cancel before
 * shipping: stop at a decision), runs the actions that need nothing but
 * the order's facts (validate_order), takes triggers and transitions,
 * and stops at the first thing that must be committed: an action with a
 * database effect (reserve, release or consume stock), a wait, a retry,
 * a failure, or an end.  What it hands back is one commit: the JSON
 * element wf_commit (sql/009) takes, with the run's next state (for a
 * reservation, one next state per outcome: ok, nostock, untracked) and
 * the step history entries of every step it took, each with its timing
 * and attempt.  Past an effect that succeeds, the next state goes on
 * through the pure steps that follow, to the next wait, end or effect, so
 * a standard order takes one commit from new to ready_to_ship.  Once
 * committed, wf_step_committed moves the run there.
 *
 * Every step a run takes is in its history; a commit that is lost
 * (crash) is simply decided again from the last committed state, and one
 * that lost a race (stale) is dropped: pure steps are safe to redo, and
 * an effect commits together with the state that records it.
 *
 * The idempotency key of a step is "<run id>:<seq>:<action>": the same
 * for every attempt and resume of that step, different for a later visit.
 * Actions with effects outside PostgreSQL (the shipping steps, ship.h)
 * record what they do under it, so a retried or resumed step never acts
 * twice.  Such an action is a commit point: the decision stops there with
 * a "call" item ({"effect": "call", "call": {"action", "key"}, "then":
 * {"ok": ...}}); the engine runs the call, then commits the item (done)
 * or what wf_step_call_failed makes of it.  A run without a row yet (a
 * start requested through the API) is keyed "new:..." until its first
 * commit, which always comes before a call (validate and reserve first).
 *
 * Manual actions (retry, skip, cancel, pause, resume, approve, reject)
 * are decided here too: wf_step_allowed says which the run takes now.
 *
 * Pure and thread-safe; called by the engine (wf.c) and the unit tests.
 */
#ifndef ORDERFLOW_WF_STEP_H
#define ORDERFLOW_WF_STEP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "orderflow/backoff.h"
#include "orderflow/wf_def.h"

/* order_workflows.workflow_status. */
enum wf_status {
	WF_RUNNING,		/* a step is due (now, or at retry_after) */
	WF_WAITING,		/* parked until an event (wait_kind) */
	WF_PAUSED,		/* stopped by the creator */
	WF_FAILED,		/* needs attention: a step failed, or it ended in a failure state */
	WF_COMPENSATING,	/* undoing what was done, then cancelled or failed */
	WF_COMPLETED,		/* ended in a completed state */
	WF_CANCELLED,		/* cancelled; what it did was compensated */
	WF_STATUS_COUNT
};

/* The manual actions of POST /api/orders/{id}/workflow/actions. */
enum wf_manual {
	WF_M_RETRY,		/* run the failed step again, attempts from zero */
	WF_M_SKIP,		/* end the current action as if it had succeeded */
	WF_M_CANCEL,		/* compensate what was done, then cancelled */
	WF_M_PAUSE,		/* stop until resumed */
	WF_M_RESUME,		/* go on where it was paused */
	WF_M_APPROVE,		/* approval: approve; buyer's cancel request: accept it */
	WF_M_REJECT,		/* approval: reject; buyer's cancel request: decline it */
	WF_M_COUNT
};

/* The wait of a buyer's cancellation request, decided by approve or reject. */
#define WF_WAIT_CANCEL "cancel_decision"
/* Compensations a run can owe at once. */
#define WF_STEP_MAX_COMP 16

struct wf_run {
	char		id[37];		/* order_workflows.id; "" until a new run's first commit */
	char		order_id[37];	/* orders.id */
	char		creator[37];	/* orders.user_id */
	char		tiktok_id[65];	/* the owner's key */
	struct wf_def	*def;		/* holds a reference */
	bool		named;		/* the row records def (a run the sync started has none yet) */
	int		state;		/* current state index */
	int		action;		/* next entry action of the state */
	int		status;		/* enum wf_status */
	char		wait[24];	/* wait kind while WAITING, else "" */
	int		attempt;	/* attempts of the current action */
	int		seq;		/* transitions committed */
	int		version;	/* the row's version (0: not inserted yet) */
	bool		terminal;	/* state is terminal */
	bool		cancel_declined; /* the creator declined the buyer's cancel request */
	char		pending[WF_DEF_NAME_MAX + 1];	/* trigger being taken, or "" */
	int		ncomp;		/* compensations owed */
	int		comp[WF_STEP_MAX_COMP];	/* enum wf_action, the next one first */
	int		end_status;	/* COMPENSATING: CANCELLED or FAILED */
	int		paused_from;	/* PAUSED: what resume restores */
	int64_t		deadline_ms;	/* TikTok's deadline, wall ms, 0: none */
	char		policy[16];	/* a SKU without stock row: not_tracked or needs_attention */
	json_t		*facts;		/* the order's facts (wf_cond.h); owned */
	json_t		*restart;	/* the start that follows once it ends ({name,
					   config}), or NULL; owned */
	json_t		*config;	/* a new run's workflow_config, or NULL; owned */
};

/* What a decision needs from the engine. */
struct wf_step_env {
	int64_t		now_ms;		/* wall clock, for history timings */
	struct backoff_policy policy[WF_POLICY_COUNT];	/* indexed by enum wf_policy */
	uint32_t	rnd;		/* jitter */
	bool		inventory_open;	/* the inventory breaker refuses calls now */
	int64_t		inventory_wait_ms; /* until it lets one through */
};

const char *wf_status_name(int s);
int wf_status_parse(const char *name);
const char *wf_manual_name(int m);
int wf_manual_parse(const char *name);

/* A new run of def for an order: at the initial state, not committed yet. */
void wf_step_init(struct wf_run *r, struct wf_def *def);
/* Free what the run holds (def reference, facts). */
void wf_step_clear(struct wf_run *r);

/*
 * The next commit of r (a JSON object for wf_commit, caller owns), or
 * NULL when there is nothing to do (a final run).  r is not changed.
 */
json_t *wf_step_next(const struct wf_run *r, const struct wf_step_env *env);
/*
 * Commit item whose effect failed (the database refused it): the same
 * step again after the policy's delay, or, attempts exhausted, the run
 * failed at that step (no effect); the steps the item took before its
 * effect are kept.  error is recorded.
 */
json_t *wf_step_effect_failed(const struct wf_run *r, const struct wf_step_env *env,
    const char *error, json_t *item);
/* What the call of a commit item with effect "call" (an outside action) ended in. */
enum wf_call_result {
	WF_CALL_RETRY,		/* transient: again after the policy's delay (or delay_ms, if longer) */
	WF_CALL_WAIT,		/* a breaker is open: again after delay_ms, no attempt used */
	WF_CALL_FAIL,		/* needs a person: the run fails at the step, error recorded */
};
/*
 * The commit of a call item that did not succeed.  A failure while
 * compensating leaves the compensation owed: retry runs it again, skip
 * drops it.  (A call that succeeded commits the item itself, its "then"
 * being its "ok" alternative: wf_step_call_done.)
 */
json_t *wf_step_call_failed(const struct wf_run *r, const struct wf_step_env *env, json_t *item,
    enum wf_call_result how, const char *error, int64_t delay_ms);
/* The call of item succeeded (what it did: detail): item becomes its commit. */
void wf_step_call_done(json_t *item, const char *detail);

/*
 * r's commit item c was committed with the verdict ok: move r to the next
 * state it chose (for a reservation, the one of outcome), at version.
 */
void wf_step_committed(struct wf_run *r, json_t *c, const char *outcome, int version);

/* The manual actions r takes now, as a bit set of 1 << enum wf_manual. */
unsigned wf_step_allowed(const struct wf_run *r);
/* "[\"retry\",\"cancel\"]": the names in a bit set. */
void wf_step_allowed_json(unsigned set, char *buf, size_t size);
/*
 * The commit of manual action m on r by actor (reason may be NULL), or
 * NULL when r does not take it now (see wf_step_allowed).
 */
json_t *wf_step_manual(const struct wf_run *r, const struct wf_step_env *env, int m,
    const char *actor, const char *reason);

/* "<id>:<seq>:<action>": the idempotency key of r's current step (size >= 128). */
void wf_step_key(const struct wf_run *r, char *buf, size_t size);

#endif
