/*
 * wf: the workflow engine of one worker.
 *
 * Every run lives on the worker that owns its order (ostore).  A run the
 * engine works on is a job in memory: loaded from its order_workflows row
 * (claimed with a lease) or started for a new order, decided by wf_step,
 * committed by wf_commit (sql/009) and decided again, until it waits, ends
 * or fails.  A run that waits is parked: an entry of a few bytes in a
 * table keyed by order id, holding no I/O and no order data; an event for
 * the order (a TikTok change, a manual action) loads it again.  An event
 * or completion for an order that is no longer there is normal, and
 * dropped: the database row is the truth, and whatever must wake a run
 * is also written there (retry_after), where worker 0's claim sweep
 * finds it after a crash, in TikTok deadline order.
 *
 * Commits are grouped: the jobs that become ready while a commit is in
 * flight go in the next one (up to workflow.max_batch), sorted by
 * deadline, so a batch's reservations take a viral SKU's stock row once.
 * A batch that the database refuses is split: its jobs commit one by one,
 * and only the one at fault uses up attempts (wf_step_effect_failed).
 *
 * Starts: a new order (the change hook) is run through its creator's rules
 * (cached per worker for workflow.rules_cache; PUTs through this daemon
 * reach every worker at once) and started at once.
 *
 * Owned per worker (the services table); the entry points below run on
 * the order's owner worker, except wf_forget_creator (any worker).
 */
#ifndef ORDERFLOW_WF_H
#define ORDERFLOW_WF_H

#include <jansson.h>
#include <stdbool.h>

struct config;
struct evbuffer;
struct order_change;
struct pg_pool;
struct worker;
struct worker_set;

void wf_prepare(struct pg_pool *pg);
void *wf_new(struct worker *w);
void wf_start(struct worker *w);
void wf_reconfigure(struct worker *w, const struct config *cfg);
void wf_close(struct worker *w);
void wf_free(struct worker *w);
void wf_metrics(struct evbuffer *out, struct worker_set *s);
/* The change hook: start runs for new orders, wake the runs of changed ones. */
void wf_order_changed(struct worker *w, const struct order_change *c);

/* What a manual action or a workflow request ended in, for its HTTP answer. */
struct wf_answer {
	int		status;		/* HTTP status: 200, 404, 409, 412, 503 */
	const char	*code;		/* error code when not 200 */
	const char	*message;	/* error message, or NULL */
	json_t		*doc;		/* 200: the body (borrowed during the callback) */
};

typedef void wf_answer_cb(const struct wf_answer *a, void *arg);

/*
 * A manual action (enum wf_manual) on the live run of order (a UUID) of
 * creator: if_match 0, or the run's version it must be at (412 when it is
 * not); 409 with the allowed actions when the run does not take it now;
 * 404 when the order has no live run.  cb runs exactly once.
 */
void wf_act(struct worker *w, const char *creator, const char *order, const char *tiktok_id,
    int action, long long if_match, const char *reason, wf_answer_cb *cb, void *arg);

/*
 * POST /api/orders/{id}/workflow: start workflow name for the order now;
 * with force, a live run is cancelled first (its compensations run) and
 * the new one starts once that is done.  409 when a run is live and force
 * is not set, 400 for an unknown workflow.  config: JSON object text or
 * NULL, stored with the run.
 */
void wf_request(struct worker *w, const char *creator, const char *order, const char *tiktok_id,
    const char *name, const char *config, bool force, wf_answer_cb *cb, void *arg);

/* A creator's rules or definitions changed: every worker reads them again (any thread). */
void wf_forget_creator(struct worker_set *s, const char *creator);
/* Stock of creator may have come (an inventory change): wake what it can serve. */
void wf_stock_changed(struct worker *w, const char *creator);

/* Runs parked on all workers, and those in memory, for health. */
long long wf_parked(struct worker_set *s);
long long wf_active(struct worker_set *s);

#endif
