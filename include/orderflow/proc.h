/*
 * proc: processing of the stored webhook events.
 *
 * Every event with an order id is processed on the worker that owns the
 * order (worker_owner), so one order is never fetched or written by two
 * workers of a process at once.  The owner queues events per shop, sends
 * up to tiktok.detail_batch distinct order ids in one Get Order Detail
 * call, applies the snapshots in one transaction (apply), and marks the
 * events processed in that same transaction.
 *
 * Failures: retryable TikTok answers are tried again on the worker's
 * timer wheel with the tiktok.retry_* policy (capped exponential, with
 * jitter); an open breaker parks the batch until the breaker lets a
 * probe through, without using up attempts; an event that exhausts its
 * attempts, or whose answer can never succeed, becomes a dead letter
 * (webhook_events.dead_at).  Refused shop credentials, a deauthorization
 * (type 6) or an expiring authorization (type 7) pause the shop; its
 * events wait in the inbox until it is active again.
 *
 * Crash safety: events are leased to this process when stored (see
 * webhook) and when claimed.  Worker 0's lease sweep (lease.c) claims
 * every tiktok.claim_interval the events nobody holds (a crash, a
 * restart, a queue overflow) with FOR UPDATE SKIP LOCKED, so two processes
 * never hold the same event; at start it first frees the leases of dead
 * processes of this host.
 *
 * Owned per worker; called by webhook (proc_submit), worker (lifecycle),
 * health (figures) and admin (replay).
 */
#ifndef ORDERFLOW_PROC_H
#define ORDERFLOW_PROC_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;
struct pg_pool;
struct proc;
struct worker;
struct worker_set;

void proc_prepare(struct pg_pool *pg);
struct proc *proc_new(struct worker *w);
void proc_start(struct proc *p);
/* Drop what waits (it stays leased in the inbox) and refuse new work. */
void proc_close(struct proc *p);
void proc_free(struct proc *p);

/*
 * A stored event held by this process (called on any worker): hand it to
 * the owner of its order.  order_id NULL for events about the shop.
 */
void proc_submit(struct worker *from, int64_t id, const char *shop_id, int type,
    const char *order_id, int attempts);
/* Pause a shop whose credentials TikTok refused (poll uses it too). */
void proc_pause_shop(struct worker *w, const char *shop_id, const char *why);
/* Run the claim sweep soon (after a replay). */
void proc_wake_claim(struct worker_set *s);

/* Events held in memory over all workers. */
long long proc_in_memory(struct worker_set *s);
/*
 * Whether the workers take more events now (under tiktok.max_queue each);
 * when not, new events are stored unleased and left for the claim sweep.
 */
bool proc_has_room(struct worker *w);
void proc_metrics(struct evbuffer *out, struct worker_set *s);

#endif
