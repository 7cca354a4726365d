/*
 * pg: a pool of nonblocking libpq connections owned by one worker.
 *
 * Callers build a batch (one or more statements), submit it, and get one
 * callback when every result is in.  A batch goes to one connection as a
 * libpq pipeline ending in a single sync, so its statements cost one
 * round trip and run as one implicit transaction: atomic, and a failure
 * ends at the sync.  (Never put BEGIN ... COMMIT in a batch: a failure
 * would leave the transaction block aborted for the batches behind it.)
 * When no connection is idle, a batch
 * is sent behind those in flight on the least loaded connection (up to 4
 * per connection), else it waits in the queue.  Statements registered with
 * pg_pool_prepare are prepared on every connection as it comes up.
 *
 * Connections are opened with PQconnectStart/PQconnectPoll on the worker's
 * loop, dropped on error or query timeout, and reopened with jittered
 * exponential backoff.  When no connection is up, or the wait queue is
 * full, pg_submit refuses at once so the caller can answer 503.
 *
 * The callback runs exactly once per batch for which pg_submit returned
 * PG_OK, on the pool's loop, never from inside pg_submit or the pg_batch_*
 * calls that build a batch: a batch whose send fails at once is called
 * back on a later turn of the loop, so state the caller sets after PG_OK
 * is in place when the callback runs.
 * On PG_EDOWN or PG_EFULL the batch is freed and its callback never runs.
 * pg_pool_close runs every remaining callback ("shutting down", or the
 * failure already met) before it returns.
 *
 * Owned and called by one worker thread only; the counters in
 * struct pg_stats may be read from other threads.  A callback may call
 * pg_submit, never pg_pool_free.
 */
#ifndef ORDERFLOW_PG_H
#define ORDERFLOW_PG_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "orderflow/util.h"

struct event_base;
struct config;
struct pg_pool;
struct pg_batch;

/* Called once per batch accepted by pg_submit (see top): success, failure, or shutdown. */
typedef void pg_batch_cb(struct pg_batch *b, void *arg);

enum pg_submit {
	PG_OK,		/* queued or sent; the callback will run, later */
	PG_EDOWN,	/* no connection is up: the database is unreachable */
	PG_EFULL,	/* the wait queue is full */
};

/* Live figures, written by the owning worker, readable by any thread. */
struct pg_stats {
	atomic_int	up;		/* connections ready or busy */
	atomic_int	busy;		/* connections running a batch */
	atomic_int	connecting;	/* connections being opened */
	atomic_int	waiting;	/* batches in the wait queue */
	atomic_ullong	batches;	/* batches completed */
	atomic_ullong	errors;		/* batches that failed */
};

struct pg_pool *pg_pool_new(struct event_base *base, const struct config *cfg);
/* Register a statement to prepare on every connection (before pg_pool_start). */
void pg_pool_prepare(struct pg_pool *p, const char *name, const char *sql);
/* Begin connecting. */
void pg_pool_start(struct pg_pool *p);
/* Take new timeouts and limits after a reload. */
void pg_pool_reconfigure(struct pg_pool *p, const struct config *cfg);
/*
 * Fail every queued and running batch ("shutting down"), close all, and
 * run every remaining callback before returning.
 */
void pg_pool_close(struct pg_pool *p);
/* Free the pool (closing it first); its stats stay readable until then. */
void pg_pool_free(struct pg_pool *p);
const struct pg_stats *pg_pool_stats(const struct pg_pool *p);
/* True once every connection has had its first connect attempt. */
bool pg_pool_tried(const struct pg_pool *p);

struct pg_batch *pg_batch_new(pg_batch_cb *cb, void *arg);
/* Add a statement: a prepared name (prepared = true) or SQL text; values are copied. */
void pg_batch_add(struct pg_batch *b, bool prepared, const char *stmt, int nparams,
    const char *const *values);
/*
 * Submit; on anything but PG_OK the batch is freed and cb is not called.
 * Never runs a callback itself, not even when the send fails at once.
 */
enum pg_submit pg_submit(struct pg_pool *p, struct pg_batch *b) MUSTCHECK;

/* In the callback: NULL on success, else why the batch failed. */
const char *pg_batch_error(const struct pg_batch *b);
/* In the callback: the result of statement i (valid until the callback returns). */
PGresult *pg_batch_result(const struct pg_batch *b, int i);
/* The SQLSTATE of a failed batch, or "" (e.g. "40001", "23505"). */
const char *pg_batch_sqlstate(const struct pg_batch *b);

#endif
