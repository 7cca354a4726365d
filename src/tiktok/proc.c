/*
 * proc: owner-worker queues, detail fetches, applies, retries, dead
 * letters, shop pauses and the claim sweep.
 *
 * A job is one event; a batch is the jobs of one shop whose distinct
 * order ids go in one Get Order Detail call.  A batch is in one of three
 * states: waiting on its timer (a retry or a parked breaker), fetching,
 * or applying.  Only fetching and applying batches have a callback out;
 * waiting ones are on the wheel and freed by proc_close.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <search.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "orderflow/apply.h"
#include "orderflow/backoff.h"
#include "orderflow/config.h"
#include "orderflow/lease.h"
#include "orderflow/log.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/poll.h"
#include "orderflow/proc.h"
#include "orderflow/tok.h"
#include "orderflow/shops.h"
#include "orderflow/tt.h"
#include "orderflow/twheel.h"
#include "orderflow/util.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"

/* Events claimed per sweep query. */
#define PROC_CLAIM_MAX 1000
/* Jobs one batch may carry (several events can name one order). */
#define PROC_BATCH_JOBS 1000
/* Wait before trying a full HTTPS queue again, and the first claim sweep. */
#define PROC_SHORT_WAIT_MS 100
#define PROC_FIRST_CLAIM_MS 500
/* Writes in flight per worker (see proc_apply_pump). */
#define PROC_APPLY_WRITERS 1
/* Most orders one merged write carries. */
#define APPLY_MERGE_MAX 500
/*
 * Database failures of an apply: 200 ms doubling up to 5 s, with jitter;
 * given up at half the lease (the attempts bound is the lease, not a count).
 */
static const struct backoff_policy proc_apply_policy = { 1000000, 200, 5000, 2.0 };

struct proc_job {
	TAILQ_ENTRY(proc_job) entry;
	int64_t		id;		/* webhook_events.id */
	int		type;
	int		attempts;	/* made before this process got it */
	char		*shop_id;
	char		*order_id;	/* NULL: an event about the shop */
};

TAILQ_HEAD(proc_job_list, proc_job);

/* The queue of one shop on this worker. */
struct proc_shop {
	char		*shop_id;
	struct proc_job_list jobs;
	int		njobs;
	bool		ready;		/* on the ready list */
	TAILQ_ENTRY(proc_shop) ready_entry;
};

enum proc_state { PROC_WAIT, PROC_FETCH, PROC_APPLY };

struct proc_batch {
	LIST_ENTRY(proc_batch) entry;
	struct proc	*p;
	char		*shop_id;
	struct proc_job_list jobs;
	int		njobs;
	json_t		*ids;		/* distinct order ids, in the call */
	json_t		*records;	/* snapshots to apply, after the fetch */
	int		attempt;	/* fetch attempts made */
	int		apply_tries;
	int64_t		first_apply_us;
	enum proc_state	state;
	bool		queued;		/* on the apply queue */
	TAILQ_ENTRY(proc_batch) apply_entry;
	struct twheel_timer timer;
	void		(*resume)(struct proc_batch *);
};

struct proc {
	struct worker	*w;
	void		*shops;		/* tsearch tree of struct proc_shop */
	TAILQ_HEAD(, proc_shop) ready;	/* shops with queued jobs */
	LIST_HEAD(, proc_batch) batches;
	TAILQ_HEAD(, proc_batch) apply_queue;	/* fetched, waiting to be written */
	size_t		waiting_orders;	/* orders in apply_queue */
	int		inflight;	/* detail calls out */
	int		applying;	/* writes out */
	struct event	*kick;		/* dispatch at the end of this loop turn */
	struct lease_sweep *sweep;	/* claims unheld events (worker 0 only) */
	bool		closing;
	atomic_llong	in_memory;	/* jobs queued or in batches */
	atomic_ullong	processed, retries, dead, released, claimed, paused;	/* see proc_metrics */
	atomic_ullong	applied, stale, unchanged, apply_failures, parked;
};

static void proc_dispatch(struct proc *p);
static void proc_fetch(struct proc_batch *b);

static const char proc_claim_sql[] =
    "UPDATE webhook_events e SET lease_owner = $1,"
    " lease_until = now() + $2::bigint * interval '1 millisecond'"
    " FROM (SELECT w.id FROM webhook_events w JOIN shops s ON s.id = w.shop_id"
    "  WHERE w.processed_at IS NULL AND w.dead_at IS NULL AND s.status = 'active'"
    "  AND (w.lease_until IS NULL OR w.lease_until < now())"
    "  ORDER BY w.received_at LIMIT $3 FOR UPDATE OF w SKIP LOCKED) c"
    " WHERE e.id = c.id RETURNING e.id, e.shop_id::text, e.event_type, e.order_id, e.attempts";
static const char proc_owners_sql[] =
    "SELECT DISTINCT lease_owner FROM webhook_events WHERE processed_at IS NULL"
    " AND dead_at IS NULL AND lease_until > now() AND lease_owner LIKE $1";
static const char proc_release_owner_sql[] =
    "UPDATE webhook_events SET lease_owner = NULL, lease_until = NULL"
    " WHERE lease_owner = $1 AND processed_at IS NULL";
static const char proc_release_sql[] =
    "UPDATE webhook_events SET lease_owner = NULL, lease_until = NULL"
    " WHERE id = ANY ($1::bigint[]) AND lease_owner = $2";
static const char proc_note_sql[] =
    "UPDATE webhook_events SET attempts = greatest(attempts, $2::integer), last_error = $3,"
    " lease_until = now() + $4::bigint * interval '1 millisecond'"
    " WHERE id = ANY ($1::bigint[]) AND lease_owner = $5";
static const char proc_dead_sql[] =
    "UPDATE webhook_events SET dead_at = now(), attempts = greatest(attempts, $2::integer),"
    " last_error = $3, lease_owner = NULL, lease_until = NULL"
    " WHERE id = ANY ($1::bigint[]) AND processed_at IS NULL";
/* Pause an active shop (audited) and mark the events that caused it processed. */
static const char proc_pause_sql[] =
    "WITH s AS (UPDATE shops SET status = $2::shop_status, paused_reason = $3"
    "  WHERE id = $1::uuid AND status = 'active' RETURNING id, creator_id),"
    " a AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT creator_id, 'tiktok_shop', 'shop.paused', 'shop', id::text,"
    "  '{\"status\":\"active\"}', jsonb_build_object('status', $2::text, 'reason', $3::text)"
    "  FROM s RETURNING 1)"
    " UPDATE webhook_events SET processed_at = now(), lease_owner = NULL, lease_until = NULL,"
    " attempts = attempts + 1 WHERE id = ANY ($4::bigint[])";

/* A deauthorized seller's tokens are dead: nothing may renew them. */
static const char proc_revoke_sql[] =
    "UPDATE tiktok_authorizations SET status = 'revoked',"
    " error = 'the seller deauthorized the app', refresh_owner = NULL, refresh_until = NULL"
    " WHERE id = (SELECT authorization_id FROM shops WHERE id = $1::uuid)";

static const char proc_done_sql[] =
    "UPDATE webhook_events SET processed_at = now(), lease_owner = NULL, lease_until = NULL,"
    " attempts = attempts + 1 WHERE id = ANY ($1::bigint[])";

void
proc_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "proc_done", proc_done_sql);
	pg_pool_prepare(pg, "proc_revoke", proc_revoke_sql);
	pg_pool_prepare(pg, "proc_claim", proc_claim_sql);
	pg_pool_prepare(pg, "proc_owners", proc_owners_sql);
	pg_pool_prepare(pg, "proc_release_owner", proc_release_owner_sql);
	pg_pool_prepare(pg, "proc_release", proc_release_sql);
	pg_pool_prepare(pg, "proc_note", proc_note_sql);
	pg_pool_prepare(pg, "proc_dead", proc_dead_sql);
	pg_pool_prepare(pg, "proc_pause", proc_pause_sql);
}

/* Read-modify-write: proc_submit counts a job in on the owner's proc from another thread. */
static void
proc_held(struct proc *p, long long delta)
{
	atomic_fetch_add_explicit(&p->in_memory, delta, memory_order_relaxed);
}

static void
proc_job_free(struct proc_job *j)
{
	free(j->shop_id);
	free(j->order_id);
	free(j);
}

/* Free every job of a list, counting them out of memory. */
static void
proc_jobs_free(struct proc *p, struct proc_job_list *jobs)
{
	struct proc_job *j;

	while ((j = TAILQ_FIRST(jobs)) != NULL) {
		TAILQ_REMOVE(jobs, j, entry);
		proc_job_free(j);
		proc_held(p, -1);
	}
}

/* "{1,2,3}": the event ids of a job list as a bigint[] literal. */
static char *
proc_ids_literal(struct proc_job_list *jobs)
{
	struct evbuffer *buf = evbuffer_new();
	struct proc_job *j;
	char *out;

	evbuffer_add(buf, "{", 1);
	TAILQ_FOREACH(j, jobs, entry)
		evbuffer_add_printf(buf, "%s%lld", j == TAILQ_FIRST(jobs) ? "" : ",", (long long)j->id);
	evbuffer_add(buf, "}", 2);
	out = xstrdup((const char *)evbuffer_pullup(buf, -1));
	evbuffer_free(buf);
	return out;
}

static void
proc_on_exec(struct pg_batch *b, void *arg)
{
	if (pg_batch_error(b) != NULL)
		log_warn("inbox update failed", "statement=%s error=%s", (const char *)arg,
		    log_quote(pg_batch_error(b)));
}

/*
 * A statement whose outcome only matters for bookkeeping: if it is lost
 * the lease runs out and the sweep picks the events up again.
 */
static void
proc_exec(struct proc *p, const char *stmt, int n, const char *const *params)
{
	struct pg_batch *b = pg_batch_new(proc_on_exec, (void *)stmt);

	pg_batch_add(b, true, stmt, n, params);
	if (pg_submit(p->w->pg, b) != PG_OK)
		log_warn("inbox update not sent: database unavailable", "statement=%s", stmt);
}

/* Give events back to the inbox for whoever claims them next. */
static void
proc_release(struct proc *p, struct proc_job_list *jobs, const char *why)
{
	char *ids;
	int n = 0;
	struct proc_job *j;

	TAILQ_FOREACH(j, jobs, entry)
		n++;
	if (n == 0)
		return;
	ids = proc_ids_literal(jobs);
	log_debug("events released", "count=%d reason=%s", n, log_quote(why));
	proc_exec(p, "proc_release", 2, (const char *[]){ ids, p->w->set->instance });
	util_count(&p->released, (unsigned long long)n);
	proc_jobs_free(p, jobs);
	free(ids);
}

/* Dead letters: kept, visible and replayable, never retried by themselves. */
static void
proc_dead(struct proc *p, struct proc_job_list *jobs, int attempts, const char *error)
{
	char *ids, num[16];
	int n = 0;
	struct proc_job *j;

	TAILQ_FOREACH(j, jobs, entry)
		n++;
	if (n == 0)
		return;
	ids = proc_ids_literal(jobs);
	snprintf(num, sizeof(num), "%d", attempts);
	log_warn("events dead-lettered", "count=%d first_id=%lld attempts=%d error=%s", n,
	    (long long)TAILQ_FIRST(jobs)->id, attempts, log_quote(error));
	proc_exec(p, "proc_dead", 3, (const char *[]){ ids, num, error });
	util_count(&p->dead, (unsigned long long)n);
	proc_jobs_free(p, jobs);
	free(ids);
}

static void
proc_batch_free(struct proc_batch *b)
{
	twheel_cancel(&b->timer);
	LIST_REMOVE(b, entry);
	if (b->queued) {
		TAILQ_REMOVE(&b->p->apply_queue, b, apply_entry);
		b->p->waiting_orders -= json_array_size(b->records);
	}
	proc_jobs_free(b->p, &b->jobs);
	json_decref(b->ids);
	json_decref(b->records);
	free(b->shop_id);
	free(b);
}

static void
proc_on_batch_timer(struct twheel_timer *t)
{
	struct proc_batch *b = container_of(t, struct proc_batch, timer);

	b->resume(b);
}

/* Run resume(b) after ms on the wheel. */
static void
proc_later(struct proc_batch *b, int64_t ms, void (*resume)(struct proc_batch *))
{
	b->state = PROC_WAIT;
	b->resume = resume;
	twheel_add(b->p->w->wheel, &b->timer, worker_now_ms() + (uint64_t)(ms > 0 ? ms : 0));
}

static struct proc_batch *
proc_batch_new(struct proc *p, const char *shop_id)
{
	struct proc_batch *b = xcalloc(1, sizeof(*b));

	b->p = p;
	b->shop_id = xstrdup(shop_id);
	TAILQ_INIT(&b->jobs);
	b->ids = json_array();
	twheel_timer_init(&b->timer, proc_on_batch_timer);
	LIST_INSERT_HEAD(&p->batches, b, entry);
	return b;
}

/* ---- queues ------------------------------------------------------------ */

static int
proc_shop_cmp(const void *a, const void *b)
{
	return strcmp(((const struct proc_shop *)a)->shop_id, ((const struct proc_shop *)b)->shop_id);
}

static struct proc_shop *
proc_shop_get(struct proc *p, const char *shop_id)
{
	struct proc_shop key = { .shop_id = (char *)shop_id }, *sh, **found;

	if ((found = tfind(&key, &p->shops, proc_shop_cmp)) != NULL)
		return *found;
	sh = xcalloc(1, sizeof(*sh));
	sh->shop_id = xstrdup(shop_id);
	TAILQ_INIT(&sh->jobs);
	if (tsearch(sh, &p->shops, proc_shop_cmp) == NULL)
		abort();
	return sh;
}

static void
proc_kick(struct proc *p)
{
	if (!p->closing)
		event_active(p->kick, 0, 0);
}

static void
proc_enqueue(struct proc *p, struct proc_job *j)
{
	struct proc_shop *sh = proc_shop_get(p, j->shop_id);

	TAILQ_INSERT_TAIL(&sh->jobs, j, entry);
	sh->njobs++;
	if (!sh->ready) {
		sh->ready = true;
		TAILQ_INSERT_TAIL(&p->ready, sh, ready_entry);
	}
	proc_kick(p);
}

/* Move up to detail_batch distinct orders of a shop's queue into a batch. */
static struct proc_batch *
proc_take(struct proc *p, struct proc_shop *sh)
{
	struct proc_batch *b = proc_batch_new(p, sh->shop_id);
	size_t max = (size_t)p->w->cfg->tiktok.detail_batch;
	struct proc_job *j;

	while ((j = TAILQ_FIRST(&sh->jobs)) != NULL && b->njobs < PROC_BATCH_JOBS) {
		bool seen = false;
		size_t i;
		json_t *id;

		json_array_foreach(b->ids, i, id)
			if (strcmp(json_string_value(id), j->order_id) == 0)
				seen = true;
		if (!seen && json_array_size(b->ids) == max)
			break;
		if (!seen)
			json_array_append_new(b->ids, json_string(j->order_id));
		TAILQ_REMOVE(&sh->jobs, j, entry);
		sh->njobs--;
		TAILQ_INSERT_TAIL(&b->jobs, j, entry);
		b->njobs++;
		if (j->attempts > b->attempt)
			b->attempt = j->attempts;
	}
	return b;
}

/* Start detail calls while connections are free, shops in turn. */
static void
proc_dispatch(struct proc *p)
{
	struct proc_shop *sh;

	/*
	 * Fetched orders wait for the database in memory: when a full write is
	 * already waiting, fetching more would only grow memory, not speed.
	 */
	while (!p->closing && p->inflight < p->w->cfg->tiktok.connections &&
	    p->waiting_orders < APPLY_MERGE_MAX && (sh = TAILQ_FIRST(&p->ready)) != NULL) {
		struct proc_batch *b;

		TAILQ_REMOVE(&p->ready, sh, ready_entry);
		sh->ready = false;
		b = proc_take(p, sh);
		if (sh->njobs > 0) {
			sh->ready = true;
			TAILQ_INSERT_TAIL(&p->ready, sh, ready_entry);
		}
		proc_fetch(b);
	}
}

static void
proc_on_kick(evutil_socket_t fd, short what, void *arg)
{
	proc_dispatch(arg);
}

/* ---- fetch ------------------------------------------------------------- */

static void proc_on_detail(const struct tt_result *r, void *arg);
static void proc_apply(struct proc_batch *b);

/* The shop if it may be called now; else the batch's events go back. */
static const struct shop *
proc_active_shop(struct proc_batch *b)
{
	const struct shop *s = shops_find_id(webhook_shops(b->p->w->svc[SERVICE_WEBHOOK]), b->shop_id);

	if (s != NULL && strcmp(s->status, "active") == 0)
		return s;
	proc_release(b->p, &b->jobs, s == NULL ? "shop unknown" : "shop not active");
	proc_batch_free(b);
	return NULL;
}

static void
proc_fetch(struct proc_batch *b)
{
	struct proc *p = b->p;
	const struct shop *s;
	struct tt_creds c;
	const char *ids[TT_DETAIL_MAX];
	size_t n = json_array_size(b->ids);

	if ((s = proc_active_shop(b)) == NULL)
		return;
	c = (struct tt_creds){ s->app_key, s->app_secret, s->access_token, s->shop_cipher, s->id };
	for (size_t i = 0; i < n; i++)
		ids[i] = json_string_value(json_array_get(b->ids, i));
	switch (tt_get_orders(p->w->svc[SERVICE_TT], &c, ids, n, proc_on_detail, b)) {
	case TT_OK:
		b->state = PROC_FETCH;
		p->inflight++;
		break;
	case TT_OPEN:
		/*
		 * Waiting out an open breaker costs no attempt.  Half open, the
		 * probe is out and the wait is unknown: look again shortly.
		 */
		util_count(&p->parked, 1);
		proc_later(b, tt_breaker_wait_ms(p->w->svc[SERVICE_TT]) + PROC_SHORT_WAIT_MS, proc_fetch);
		break;
	default:
		proc_later(b, PROC_SHORT_WAIT_MS, proc_fetch);
		break;
	}
}

/* The retry policy, from the config so a reload can change it. */
static struct backoff_policy
proc_policy(const struct config *cfg)
{
	return (struct backoff_policy){ (int)cfg->tiktok.retry_attempts, cfg->tiktok.retry_base,
	    cfg->tiktok.retry_max, 2.0 };
}

/* A failed attempt: try again after the backoff, or give up. */
static void
proc_retry(struct proc_batch *b, const char *error, int64_t retry_after_ms)
{
	struct proc *p = b->p;
	struct backoff_policy pol = proc_policy(p->w->cfg);
	char *ids, num[16], lease[24];
	int64_t delay;

	b->attempt++;
	if (backoff_exhausted(&pol, b->attempt)) {
		char why[512];

		snprintf(why, sizeof(why), "gave up after %d attempts: %s", b->attempt, error);
		proc_dead(p, &b->jobs, b->attempt, why);
		proc_batch_free(b);
		return;
	}
	util_count(&p->retries, (unsigned long long)b->njobs);
	delay = backoff_delay(&pol, b->attempt, util_random());
	if (retry_after_ms > delay)
		delay = retry_after_ms < pol.max_ms ? retry_after_ms : pol.max_ms;
	log_info("TikTok call failed, will retry", "orders=%zu attempt=%d delay_ms=%lld error=%s",
	    json_array_size(b->ids), b->attempt, (long long)delay, log_quote(error));
	ids = proc_ids_literal(&b->jobs);
	snprintf(num, sizeof(num), "%d", b->attempt);
	snprintf(lease, sizeof(lease), "%lld", (long long)p->w->cfg->tiktok.lease);
	proc_exec(p, "proc_note", 5, (const char *[]){ ids, num, error, lease, p->w->set->instance });
	free(ids);
	proc_later(b, delay, proc_fetch);
}

/* Pause the shop (audited); its events wait in the inbox until it is active. */
static void
proc_pause(struct proc *p, const char *shop_id, const char *status, const char *reason,
    const char *event_ids)
{
	log_warn("shop paused", "shop=%s status=%s reason=%s", shop_id, status, log_quote(reason));
	shops_set_status(webhook_shops(p->w->svc[SERVICE_WEBHOOK]), shop_id, status);
	proc_exec(p, "proc_pause", 4, (const char *[]){ shop_id, status, reason, event_ids });
	util_count(&p->paused, 1);
}

static bool
proc_asked(struct proc_batch *b, const char *id)
{
	size_t i;
	json_t *v;

	json_array_foreach(b->ids, i, v)
		if (strcmp(json_string_value(v), id) == 0)
			return true;
	return false;
}

/* Move the jobs of orders the answer could not serve out of the batch. */
static void
proc_split(struct proc_batch *b, json_t *found)
{
	struct proc *p = b->p;
	struct proc_batch *missing = NULL;
	struct proc_job *j, *next;

	for (j = TAILQ_FIRST(&b->jobs); j != NULL; j = next) {
		json_t *v = json_object_get(found, j->order_id);
		struct proc_job_list one = TAILQ_HEAD_INITIALIZER(one);

		next = TAILQ_NEXT(j, entry);
		if (json_is_true(v))
			continue;
		TAILQ_REMOVE(&b->jobs, j, entry);
		b->njobs--;
		if (v != NULL) {
			TAILQ_INSERT_TAIL(&one, j, entry);
			proc_dead(p, &one, b->attempt + 1, json_string_value(v));
			continue;
		}
		if (missing == NULL) {
			missing = proc_batch_new(p, b->shop_id);
			missing->attempt = b->attempt;
		}
		if (!proc_asked(missing, j->order_id))
			json_array_append_new(missing->ids, json_string(j->order_id));
		TAILQ_INSERT_TAIL(&missing->jobs, j, entry);
		missing->njobs++;
	}
	if (missing != NULL)
		proc_retry(missing, "order not in TikTok's answer", 0);
}

/* Normalize the answer's orders into b->records; split off what cannot apply. */
static void
proc_sort(struct proc_batch *b, json_t *data)
{
	json_t *found = json_object(), *o;
	const char *id;
	char err[256];
	size_t i;

	b->records = json_array();
	json_array_foreach(json_object_get(data, "orders"), i, o) {
		json_t *rec = apply_normalize(o, &id, err, sizeof(err));

		if (id == NULL || json_object_get(found, id) != NULL || !proc_asked(b, id)) {
			json_decref(rec);
			continue;
		}
		if (rec != NULL) {
			json_object_set_new(found, id, json_true());
			json_array_append_new(b->records, rec);
		} else {
			json_object_set_new(found, id, json_string(err));
		}
	}
	proc_split(b, found);
	json_decref(found);
}

static void proc_on_applied(const char *error, const struct ostore_applied *r, void *arg);
static void proc_applied(struct proc_batch *b, const char *error, const struct ostore_applied *r);
static void proc_apply_pump(struct proc *p);

/* Queue fetched snapshots for writing; the pump bounds how many writes run. */
static void
proc_apply(struct proc_batch *b)
{
	struct proc *p = b->p;

	if (b->njobs == 0) {
		proc_batch_free(b);
		return;
	}
	b->state = PROC_WAIT;
	b->queued = true;
	TAILQ_INSERT_TAIL(&p->apply_queue, b, apply_entry);
	p->waiting_orders += json_array_size(b->records);
	proc_apply_pump(p);
}

/* The snapshot of the same order already in b wins if it is at least as new. */
static void
proc_merge_record(json_t *records, json_t *index, json_t *rec)
{
	const char *id = json_string_value(json_object_get(rec, "tiktok_order_id"));
	json_t *at = json_object_get(index, id);
	json_int_t t = json_integer_value(json_object_get(rec, "update_time"));

	if (at == NULL) {
		json_object_set_new(index, id, json_integer((json_int_t)json_array_size(records)));
		json_array_append(records, rec);
	} else if (t > json_integer_value(json_object_get(json_array_get(records,
	    (size_t)json_integer_value(at)), "update_time"))) {
		json_array_set(records, (size_t)json_integer_value(at), rec);
	}
}

/*
 * Fold the waiting batches of b's shop into b, up to APPLY_MERGE_MAX
 * orders: one bigger transaction is cheaper than several small ones, and
 * the statement needs each order once.
 */
static void
proc_merge(struct proc *p, struct proc_batch *b)
{
	struct proc_batch *o, *next;
	json_t *index = json_object(), *rec;
	size_t i;

	json_array_foreach(b->records, i, rec)
		json_object_set_new(index, json_string_value(json_object_get(rec, "tiktok_order_id")),
		    json_integer((json_int_t)i));
	for (o = TAILQ_FIRST(&p->apply_queue); o != NULL; o = next) {
		next = TAILQ_NEXT(o, apply_entry);
		if (strcmp(o->shop_id, b->shop_id) != 0 || json_array_size(b->records) +
		    json_array_size(o->records) > APPLY_MERGE_MAX)
			continue;
		json_array_foreach(o->records, i, rec)
			proc_merge_record(b->records, index, rec);
		TAILQ_CONCAT(&b->jobs, &o->jobs, entry);
		b->njobs += o->njobs;
		o->njobs = 0;
		proc_batch_free(o);
	}
	json_decref(index);
}

/*
 * One write in flight per worker: the batches that finish fetching while it
 * commits merge into the next one (group commit), which costs the database
 * far less per order than several small transactions at once (measured:
 * 2,470 against 1,980 webhooks/s end to end), and leaves the rest of the
 * pool to the webhooks.
 */
static void
proc_apply_pump(struct proc *p)
{
	struct proc_batch *b;
	char *ids;

	while (!p->closing && p->applying < PROC_APPLY_WRITERS &&
	    (b = TAILQ_FIRST(&p->apply_queue)) != NULL) {
		TAILQ_REMOVE(&p->apply_queue, b, apply_entry);
		b->queued = false;
		p->waiting_orders -= json_array_size(b->records);
		proc_merge(p, b);
		if (b->first_apply_us == 0)
			b->first_apply_us = util_mono_us();
		ids = proc_ids_literal(&b->jobs);
		if (ostore_apply(p->w, b->shop_id, b->records, ids, proc_on_applied, b)) {
			b->state = PROC_APPLY;
			p->applying++;
		} else {
			proc_applied(b, "database unavailable", NULL);
		}
		free(ids);
	}
}

/*
 * The database failing is not the event's fault: keep the snapshots and
 * try again, until half the lease is gone; then let the sweep have them.
 */
static void
proc_applied(struct proc_batch *b, const char *error, const struct ostore_applied *r)
{
	struct proc *p = b->p;
	int64_t delay;

	if (p->closing) {
		proc_batch_free(b);
		return;
	}
	if (error == NULL) {
		util_count(&p->processed, (unsigned long long)b->njobs);
		util_count(&p->applied, (unsigned long long)r->applied);
		util_count(&p->stale, (unsigned long long)r->stale);
		util_count(&p->unchanged, (unsigned long long)r->unchanged);
		proc_batch_free(b);
		return;
	}
	util_count(&p->apply_failures, 1);
	if (util_mono_us() - b->first_apply_us > p->w->cfg->tiktok.lease * 500) {
		log_warn("giving up applying orders; the sweep will retry", "events=%d error=%s",
		    b->njobs, log_quote(error));
		proc_batch_free(b);
		return;
	}
	delay = backoff_delay(&proc_apply_policy, ++b->apply_tries, util_random());
	log_info("applying orders failed, will retry", "events=%d delay_ms=%lld error=%s",
	    b->njobs, (long long)delay,
	    log_quote(error));
	proc_later(b, delay, proc_apply);
}

static void
proc_on_applied(const char *error, const struct ostore_applied *r, void *arg)
{
	struct proc_batch *b = arg;
	struct proc *p = b->p;

	p->applying--;
	proc_applied(b, error, r);
	proc_apply_pump(p);
	proc_kick(p);	/* the fetches held back by a full apply queue */
}

static void
proc_on_detail(const struct tt_result *r, void *arg)
{
	struct proc_batch *b = arg;
	struct proc *p = b->p;
	char why[300];

	p->inflight--;
	proc_kick(p);
	if (p->closing) {
		proc_batch_free(b);
		return;
	}
	switch (r->status) {
	case TT_OK:
		proc_sort(b, r->data);
		proc_apply(b);
		break;
	case TT_TOKEN:
		snprintf(why, sizeof(why), "TikTok refused the shop's credentials: %s", r->error);
		proc_pause(p, b->shop_id, "paused", why, "{}");
		proc_release(p, &b->jobs, "shop paused");
		proc_batch_free(b);
		break;
	case TT_FATAL:
		proc_dead(p, &b->jobs, b->attempt + 1, r->error);
		proc_batch_free(b);
		break;
	default:
		proc_retry(b, r->error, r->retry_after_ms);
		break;
	}
}

void
proc_pause_shop(struct worker *w, const char *shop_id, const char *why)
{
	char reason[300];

	snprintf(reason, sizeof(reason), "TikTok refused the shop's credentials: %s", why);
	proc_pause(w->svc[SERVICE_PROC], shop_id, "paused", reason, "{}");
}

/* ---- events about the shop ------------------------------------------- */

/* TikTok's topics without an order: 6 deauthorization, 7 authorization expiring. */
#define PROC_TYPE_DEAUTH 6
#define PROC_TYPE_EXPIRING 7

static void
proc_shop_event(struct proc *p, struct proc_job *j)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "{%lld}", (long long)j->id);
	if (j->type == PROC_TYPE_DEAUTH) {
		proc_pause(p, j->shop_id, "deauthorized", "the seller deauthorized the app", ids);
		proc_exec(p, "proc_revoke", 1, (const char *[]){ j->shop_id });
	} else if (j->type == PROC_TYPE_EXPIRING && tok_renew_now(p->w, j->shop_id)) {
		/* Renewable: renewed now, nothing to pause. */
		proc_exec(p, "proc_done", 1, (const char *[]){ ids });
	} else if (j->type == PROC_TYPE_EXPIRING) {
		proc_pause(p, j->shop_id, "paused", "the shop's authorization is about to expire "
		    "and its token was set by hand: connect the shop to renew it", ids);
	} else
		/* Stored for the record; nothing to do for a topic without an order. */
		proc_exec(p, "proc_done", 1, (const char *[]){ ids });
	util_count(&p->processed, 1);
	proc_job_free(j);
	proc_held(p, -1);
}

/* ---- entry from the webhook and the sweep ----------------------------- */

static void
proc_on_job(struct worker *w, void *arg)
{
	struct proc *p = w->svc[SERVICE_PROC];
	struct proc_job *j = arg;
	struct proc_job_list one = TAILQ_HEAD_INITIALIZER(one);

	if (p->closing) {
		proc_job_free(j);
		proc_held(p, -1);
	} else if (j->order_id == NULL) {
		proc_shop_event(p, j);
	} else if (atomic_load(&p->in_memory) > p->w->cfg->tiktok.max_queue) {
		TAILQ_INSERT_TAIL(&one, j, entry);
		proc_release(p, &one, "queue full");
	} else {
		proc_enqueue(p, j);
	}
}

static void
proc_drop_job(struct worker *w, void *arg)
{
	proc_job_free(arg);
	proc_held(w->svc[SERVICE_PROC], -1);
}

void
proc_submit(struct worker *from, int64_t id, const char *shop_id, int type, const char *order_id,
    int attempts)
{
	struct worker *owner = order_id != NULL ? worker_owner(from->set, order_id) : from;
	struct proc_job *j = xcalloc(1, sizeof(*j));

	j->id = id;
	j->type = type;
	j->attempts = attempts;
	j->shop_id = xstrdup(shop_id);
	j->order_id = order_id != NULL ? xstrdup(order_id) : NULL;
	proc_held(owner->svc[SERVICE_PROC], 1);
	if (owner == from)
		proc_on_job(owner, j);
	else
		worker_post_owned(owner, proc_on_job, proc_drop_job, j);
}

/* ---- the claim sweep (worker 0) --------------------------------------- */

static void
proc_on_claimed(PGresult *r, const char *error, void *arg)
{
	struct proc *p = arg;
	int n;

	if (r == NULL || PQnfields(r) != 5)
		return;
	n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		const char *order = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3);

		proc_submit(p->w, strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1),
		    atoi(PQgetvalue(r, i, 2)), order, atoi(PQgetvalue(r, i, 4)));
	}
	if (n > 0)
		log_info("claimed stored events", "count=%d", n);
	util_count(&p->claimed, (unsigned long long)n);
}

/* Room left in the workers' queues (tiktok.max_queue each). */
static int
proc_claim_room(void *arg)
{
	struct proc *p = arg;
	long long room = p->w->cfg->tiktok.max_queue * p->w->set->n - proc_in_memory(p->w->set);

	return room > PROC_CLAIM_MAX ? PROC_CLAIM_MAX : (int)room;
}

static int64_t
proc_claim_interval(void *arg)
{
	return ((struct proc *)arg)->w->cfg->tiktok.claim_interval;
}

static int64_t
proc_claim_lease(void *arg)
{
	return ((struct proc *)arg)->w->cfg->tiktok.lease;
}

static void
proc_wake(struct worker *w, void *arg)
{
	struct proc *p = w->svc[SERVICE_PROC];

	if (p->sweep != NULL)
		lease_sweep_wake(p->sweep);
}

void
proc_wake_claim(struct worker_set *s)
{
	worker_post(&s->workers[0], proc_wake, NULL);
}

/* ---- lifecycle and figures -------------------------------------------- */

struct proc *
proc_new(struct worker *w)
{
	struct proc *p = xcalloc(1, sizeof(*p));

	p->w = w;
	TAILQ_INIT(&p->ready);
	TAILQ_INIT(&p->apply_queue);
	LIST_INIT(&p->batches);
	p->kick = event_new(w->base, -1, 0, proc_on_kick, p);
	if (w->id == 0) {
		struct lease_queue q = {
			.name = "webhook_events", .claim = "proc_claim", .owners = "proc_owners",
			.release_owner = "proc_release_owner", .max_claim = PROC_CLAIM_MAX,
			.claimed = proc_on_claimed, .room = proc_claim_room,
			.interval = proc_claim_interval, .lease = proc_claim_lease,
		};

		p->sweep = lease_sweep_new(w, &q, p);
	}
	return p;
}

void
proc_start(struct proc *p)
{
	if (p->sweep != NULL)
		lease_sweep_start(p->sweep, PROC_FIRST_CLAIM_MS);
}

static void
proc_shop_free(void *node)
{
	struct proc_shop *sh = node;
	struct proc_job *j;

	while ((j = TAILQ_FIRST(&sh->jobs)) != NULL) {
		TAILQ_REMOVE(&sh->jobs, j, entry);
		proc_job_free(j);
	}
	free(sh->shop_id);
	free(sh);
}

void
proc_close(struct proc *p)
{
	struct proc_batch *b, *next;

	if (p->closing)
		return;
	p->closing = true;
	if (p->sweep != NULL)
		lease_sweep_close(p->sweep);
	event_del(p->kick);
	/* Batches with a callback out are freed by it; the others now. */
	for (b = LIST_FIRST(&p->batches); b != NULL; b = next) {
		next = LIST_NEXT(b, entry);
		if (b->state == PROC_WAIT)
			proc_batch_free(b);
	}
	tdestroy(p->shops, proc_shop_free);
	p->shops = NULL;
	TAILQ_INIT(&p->ready);
}

void
proc_free(struct proc *p)
{
	if (p == NULL)
		return;
	proc_close(p);
	while (!LIST_EMPTY(&p->batches))
		proc_batch_free(LIST_FIRST(&p->batches));
	lease_sweep_free(p->sweep);
	event_free(p->kick);
	free(p);
}

long long
proc_in_memory(struct worker_set *s)
{
	long long n = 0;

	for (int i = 0; i < s->n; i++)
		n += atomic_load(&((struct proc *)s->workers[i].svc[SERVICE_PROC])->in_memory);
	return n;
}

bool
proc_has_room(struct worker *w)
{
	return proc_in_memory(w->set) < (long long)w->cfg->tiktok.max_queue * w->set->n;
}

void
proc_metrics(struct evbuffer *out, struct worker_set *s)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
#define PROC_C(f, h) { "orderflow_events_" #f "_total", h, offsetof(struct proc, f) }
		PROC_C(processed, "Stored webhook events processed."),
		PROC_C(retries, "Events whose TikTok call failed and was scheduled again."),
		PROC_C(dead, "Events that became dead letters."),
		PROC_C(released, "Events given back to the inbox (shop paused, queue full)."),
		PROC_C(claimed, "Events claimed by the sweep (restart, crash, overflow)."),
		PROC_C(parked, "Batches parked while the TikTok breaker was open."),
		PROC_C(paused, "Shops paused (deauthorization, expiry, refused credentials)."),
#undef PROC_C
	};

	for (size_t k = 0; k < NELEM(counters); k++) {
		unsigned long long v = 0;

		for (int i = 0; i < s->n; i++)
			v += atomic_load((atomic_ullong *)(void *)((char *)s->workers[i].svc[SERVICE_PROC] +
			    counters[k].off));
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[k].name,
		    counters[k].help, counters[k].name, counters[k].name, v);
	}
	{
		unsigned long long a = 0, st = 0, un = 0, fails = 0, pv[3];

		for (int i = 0; i < s->n; i++) {
			a += atomic_load(&((struct proc *)s->workers[i].svc[SERVICE_PROC])->applied);
			st += atomic_load(&((struct proc *)s->workers[i].svc[SERVICE_PROC])->stale);
			un += atomic_load(&((struct proc *)s->workers[i].svc[SERVICE_PROC])->unchanged);
			fails += atomic_load(&((struct proc *)s->workers[i].svc[SERVICE_PROC])->apply_failures);
		}
		poll_synced(s, pv);
		evbuffer_add_printf(out,
		    "# HELP orderflow_orders_synced_total TikTok order snapshots written, by outcome.\n"
		    "# TYPE orderflow_orders_synced_total counter\n"
		    "orderflow_orders_synced_total{source=\"webhook\",result=\"applied\"} %llu\n"
		    "orderflow_orders_synced_total{source=\"webhook\",result=\"stale\"} %llu\n"
		    "orderflow_orders_synced_total{source=\"webhook\",result=\"unchanged\"} %llu\n"
		    "orderflow_orders_synced_total{source=\"poll\",result=\"applied\"} %llu\n"
		    "orderflow_orders_synced_total{source=\"poll\",result=\"stale\"} %llu\n"
		    "orderflow_orders_synced_total{source=\"poll\",result=\"unchanged\"} %llu\n"
		    "# HELP orderflow_apply_failures_total Order writes that failed (retried).\n"
		    "# TYPE orderflow_apply_failures_total counter\n"
		    "orderflow_apply_failures_total %llu\n"
		    "# HELP orderflow_events_in_memory Events held by the workers now.\n"
		    "# TYPE orderflow_events_in_memory gauge\n"
		    "orderflow_events_in_memory %lld\n", a, st, un, pv[0], pv[1], pv[2], fails,
		    proc_in_memory(s));
	}
}
