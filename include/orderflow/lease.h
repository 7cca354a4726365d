/*
 * lease: the durable leased queues: rows of a table (webhook_events,
 * order_workflows) that some process works on, claimed for a while.
 *
 * A row is held by the process whose instance name ("host:pid:random",
 * worker_set.instance) is in lease_owner until lease_until; another
 * process may take it once that has passed (a crash, a partition).  A
 * sweep, run by one worker of each process, claims rows nobody holds with
 * FOR UPDATE SKIP LOCKED, so two processes never hold the same row, and
 * hands them to the client's callback; a full page sweeps again at once,
 * else after the interval.  Before its first claim it frees the leases of
 * dead processes of this host (their pid is gone), so a restart does not
 * wait out the lease of the process it replaces.
 *
 * A client describes its table with the prepared statements the sweep
 * runs (struct lease_queue) and keeps everything else (what a row means,
 * its retries) to itself.  Clients: proc (webhook_events, TikTok
 * batching) and the workflow engine (order_workflows).
 *
 * Owned by the worker that runs the sweep; called on it.
 */
#ifndef ORDERFLOW_LEASE_H
#define ORDERFLOW_LEASE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "orderflow/twheel.h"

struct lease_sweep;
struct pg_pool;
struct worker;

/*
 * Claimed rows (the claim statement's result, valid during the call), or
 * r NULL when the claim failed (error set).
 */
typedef void lease_claimed_cb(PGresult *r, const char *error, void *arg);
/* How many rows may be claimed now (<= 0: none, look again after the interval). */
typedef int lease_room_cb(void *arg);
/* A duration now, ms: the sweep interval, the lease (the config may change on reload). */
typedef int64_t lease_ms_cb(void *arg);

/* A client's table, as the sweep's statements. */
struct lease_queue {
	const char	*name;		/* for logs: the table */
	/*
	 * Claim up to $3 rows for owner $1 for $2 ms; each row it returns
	 * goes to claimed.  Prepared with the name in claim.
	 */
	const char	*claim;
	/* Distinct lease owners matching LIKE $1 that hold rows now. */
	const char	*owners;
	/* Free every lease of owner $1. */
	const char	*release_owner;
	int		max_claim;	/* rows one claim may take */
	lease_claimed_cb *claimed;
	lease_room_cb	*room;
	lease_ms_cb	*interval;	/* between sweeps that found less than a page */
	lease_ms_cb	*lease;		/* how long a claim holds */
};

/* A sweep on worker w for q (copied), with arg for the callbacks. */
struct lease_sweep *lease_sweep_new(struct worker *w, const struct lease_queue *q, void *arg);
/* The first sweep after first_ms (reaping dead owners first). */
void lease_sweep_start(struct lease_sweep *s, int64_t first_ms);
/* Sweep soon (new due rows), unless a sweep is out. */
void lease_sweep_wake(struct lease_sweep *s);
/* No more sweeps; a claim in flight still calls back (pool shutdown). */
void lease_sweep_close(struct lease_sweep *s);
void lease_sweep_free(struct lease_sweep *s);
/* Rows claimed in all. */
unsigned long long lease_sweep_claimed(const struct lease_sweep *s);

/*
 * Whether the process named owner ("host:pid:random") is a process of this
 * host (self: this process's own instance name) that no longer exists.
 */
bool lease_owner_dead(const char *owner, const char *self);

#endif
