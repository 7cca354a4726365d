/*
 * ship: the workflow's shipping steps, run for the engine on one worker.
 *
 * A step is a task: it reads the order's shipping context (how it ships,
 * its packages and lines, the creator's settings, the shipments recorded
 * so far), then works package by package, calling the carrier (carrier.h)
 * and TikTok (tt.h), and records each fact in the shipments table
 * (shipment_save, sql/010) as soon as it learns it, before the next call:
 *
 *   SHIP_LABEL     seller shipping: the carrier's rates for the parcel, the
 *                  rate the creator's rule picks, the purchase.  A package
 *                  whose label is bought is never bought again; a purchase
 *                  whose answer was lost is found by reading the carrier's
 *                  shipment back.  TikTok shipping: nothing to buy.
 *   SHIP_PACKAGES  every package shipped on TikTok: TikTok shipping: Ship
 *                  Package with the creator's handover method, then the
 *                  shipping document (label URL, tracking number); seller
 *                  shipping: Ship Package with the tracking number and
 *                  TikTok's provider id for the carrier, or Mark Package As
 *                  Shipped when TikTok made no package.  The intent is
 *                  recorded before the call; a step resumed after a crash
 *                  asks TikTok whether the package shipped before calling
 *                  again, and "already shipped" answers count as done.
 *   SHIP_CONFIRM   TikTok's own view: Get Order Detail must report the
 *                  order shipped (awaiting collection or later).
 *   SHIP_VOID      the labels bought and not shipped are refunded; a
 *                  refund the carrier refuses is a failure for a person.
 *
 * The outcome is done, retry (a transient failure: the engine's retry
 * policy), wait (a breaker is open: again after delay_ms, no attempt used)
 * or fail (needs attention, with the reason).
 *
 * The SLA clock: worker 0 counts, every 10 s, the orders still to ship
 * whose TikTok ship-by time (rts_sla_time) is within shipping.sla_warning
 * or past it, for /metrics.
 *
 * Owned per worker (the services table); ship_run is called by the engine
 * (wf.c) on the order's owner worker.
 */
#ifndef ORDERFLOW_SHIP_H
#define ORDERFLOW_SHIP_H

#include <jansson.h>
#include <stdint.h>

struct evbuffer;
struct pg_pool;
struct worker;
struct worker_set;

enum ship_step {
	SHIP_LABEL, SHIP_PACKAGES, SHIP_CONFIRM, SHIP_VOID,
	SHIP_QUOTE,		/* the API's rates: SHIP_LABEL up to the purchase, the rates kept */
	SHIP_STEP_COUNT
};

enum ship_verdict {
	SHIP_DONE, SHIP_RETRY, SHIP_WAIT, SHIP_FAIL,
	SHIP_NOT_FOUND,		/* no such order of that creator */
	SHIP_INVALID,		/* the API's request cannot be done as asked (a rate id not offered) */
};

struct ship_outcome {
	enum ship_verdict verdict;
	const char	*error;		/* why, when not done; what was done, when done (or "") */
	int64_t		delay_ms;	/* RETRY: the server's Retry-After (0: the policy's); WAIT: until */
	json_t		*doc;		/* SHIP_QUOTE: {"packages": [{"package", "rates", "chosen"}]};
					   else the packages worked on; borrowed, may be NULL */
};

typedef void ship_cb(const struct ship_outcome *o, void *arg);

struct ship_task;

void ship_prepare(struct pg_pool *pg);
void *ship_new(struct worker *w);
/* Worker 0 starts the SLA clock (orders at risk, late dispatches; ship_metrics). */
void ship_start(struct worker *w);
/* Shutdown: tasks still running end at their next step (retry). */
void ship_close(struct worker *w);
void ship_free(struct worker *w);
void ship_metrics(struct evbuffer *out, struct worker_set *s);

/*
 * Run step for order (UUID) of creator; key: the workflow step's
 * idempotency key (wf_step_key).  cb runs exactly once, later, unless the
 * task is abandoned first.  NULL (cb never runs) when it cannot start:
 * the database queue is full or down, or the worker is closing.
 */
struct ship_task *ship_run(struct worker *w, enum ship_step step, const char *order,
    const char *creator, const char *key, ship_cb *cb, void *arg);
/*
 * The same for the dashboard API (any worker): rate_id, when not NULL, is
 * the rate to buy instead of the rule's pick (SHIP_LABEL).
 */
struct ship_task *ship_api(struct worker *w, enum ship_step step, const char *order,
    const char *creator, const char *key, const char *rate_id, ship_cb *cb, void *arg);
/* The caller no longer wants the answer (its job is gone): cb will not run. */
void ship_abandon(struct ship_task *t);

#endif
