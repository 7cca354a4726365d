/*
 * wf: jobs, the ready heap, loads, starts, the commit writer, parked
 * runs, manual actions, the claim sweep and the figures.
 *
 * A job is a run in memory and is in exactly one phase:
 *
 *   READY    in the ready heap, to be decided (earliest deadline first)
 *   QUEUED   its commit waits for the writer
 *   SENT     its commit is in flight
 *   TIMER    waiting on the wheel for a retry
 *
 * A run that waits, has failed or is paused leaves memory for the parked
 * table; one that ended leaves it altogether.  Loads and starts are
 * batched per loop turn (the kick event), commits per writer round.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "orderflow/backoff.h"
#include "orderflow/breaker.h"
#include "orderflow/config.h"
#include "orderflow/lease.h"
#include "orderflow/log.h"
#include "orderflow/metrics.h"
#include "orderflow/order.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/service.h"
#include "orderflow/ship.h"
#include "orderflow/smap.h"
#include "orderflow/util.h"
#include "orderflow/uset.h"
#include "orderflow/wf.h"
#include "orderflow/wf_def.h"
#include "orderflow/wf_step.h"
#include "orderflow/worker.h"

/* Rows one claim may take. */
#define WF_CLAIM_MAX 1000
/*
 * Claimed runs in memory per worker, in commit batches: enough to keep
 * the next commit full while one is in flight, and a bound on memory
 * after a backlog (a job holds its order's facts and its commit, some KiB).
 */
#define WF_CLAIM_BATCHES 2
/* ... and at least this many, so small batches still get a full claim. */
#define WF_CLAIM_MIN 1000
/* Jobs freed after which an idle worker gives the heap's free pages back. */
#define WF_TRIM_AFTER 1000
/* Before the first claim sweep, and between retries of a refused commit. */
#define WF_FIRST_CLAIM_MS 300
#define WF_WRITER_MIN_MS 100
#define WF_WRITER_MAX_MS 5000
/* Parsed definitions a worker keeps; past it the cache starts afresh. */
#define WF_DEF_CACHE_MAX 2000
/* (workflow, step) label pairs a worker counts; the rest go to "other". */
#define WF_LABELS_MAX 256
/*
 * Shipping steps a worker has out at once: beyond it, ready runs wait in
 * the heap (in deadline order) rather than in the HTTPS clients' queues.
 */
#define WF_CALLS_MAX 256
/* Runs woken by one stock check. */
#define WF_WAKE_MAX 1000

enum wf_phase {
	WF_JOB_READY,		/* in the ready heap */
	WF_JOB_QUEUED,		/* commit waiting for the writer */
	WF_JOB_SENT,		/* commit in flight */
	WF_JOB_TIMER,		/* retry on the wheel (or idle, off every list) */
	WF_JOB_CHOOSING,	/* waiting for its creator's rules to choose its workflow */
	WF_JOB_CALLING,		/* its step runs outside the database (ship.h) */
};

/* A manual action or workflow request waiting for its run. */
struct wf_req {
	TAILQ_ENTRY(wf_req) entry;
	int		action;		/* enum wf_manual, or -1: a workflow request */
	long long	if_match;	/* 0: any version */
	char		*reason;
	char		actor[64];
	char		creator[37];
	char		order[37];
	char		tiktok_id[65];
	char		*name, *config;	/* a workflow request: what to start */
	bool		force;
	wf_answer_cb	*cb;
	void		*arg;
};

TAILQ_HEAD(wf_req_list, wf_req);

struct wf;

struct wf_job {
	struct wf_run	run;
	struct wf	*wf;
	enum wf_phase	phase;
	size_t		heap;		/* READY: index in the heap */
	struct twheel_timer timer;	/* TIMER */
	json_t		*item;		/* QUEUED, SENT: the commit; CALLING: the call's item */
	struct ship_task *task;		/* CALLING: the step being run */
	TAILQ_ENTRY(wf_job) qentry;	/* QUEUED: the writer's queue */
	struct wf_req_list reqs;	/* waiting for the job to be idle */
	struct wf_req	*req;		/* SENT: the request this commit answers */
	bool		reload;		/* the order changed while busy: load it again */
	bool		solo;		/* its next commit goes alone (a batch with it failed) */
	int64_t		decided_us;	/* when its commit was decided, for the latency */
	int		metric_action;	/* the action the commit is about, or WF_A_COUNT */
};

/*
 * An order whose run is being loaded.  A change that arrives meanwhile
 * finds no job and no parked entry; it marks the load dirty, so the run is
 * loaded again with the new facts (the wake the change wrote in the row
 * would be cleared by the commit of a decision made on the old ones).
 */
struct wf_pending_load {
	int		loads;		/* loads out that name the order */
	bool		dirty;		/* it changed since they were sent */
};

/* A creator's rules and latest definitions, as a worker keeps them. */
struct wf_creator {
	struct wf_rules	*rules;		/* NULL: none stored (the default applies) */
	struct smap	*latest;	/* name -> struct wf_def * (a reference) */
	int64_t		at_ms;		/* when read (monotonic) */
};

/* A start waiting for its order's facts. */
struct wf_begin {
	char		order[37];
	char		creator[37];
	struct wf_req	*req;		/* a workflow request, or NULL (a new order) */
};

/* Counters of one (workflow, step) pair. */
struct wf_label {
	char		workflow[WF_DEF_NAME_MAX + 1];
	char		step[WF_DEF_NAME_MAX + 1];
	atomic_ullong	entered, waiting, failed;
};

/* A worker's figures; written by it, read by /metrics from any thread. */
struct wf_figures {
	atomic_ullong	started, completed, failed, cancelled, compensations, retries;
	atomic_ullong	reserved, backorders, untracked, stale, commits, commit_items;
	atomic_ullong	commit_errors, manual, claimed;
	atomic_ullong	waits[8];	/* by wait kind, see wf_wait_kinds */
	atomic_llong	parked, active;
	struct metrics_hist latency[WF_A_COUNT + 1];	/* decision to commit, by action */
	atomic_int	nlabels;
	struct wf_label	labels[WF_LABELS_MAX + 1];	/* the last is "other" */
};

static const char *const wf_wait_kinds[] = {
	"stock", "approval", "shipment", "delivery", "tiktok_hold", WF_WAIT_CANCEL, "other", NULL
};

struct wf {
	struct worker	*w;
	struct smap	*jobs;		/* order id -> struct wf_job */
	struct uset	*parked;	/* order ids: all the memory a parked run costs */
	struct wf_job	**heap;		/* READY jobs, earliest deadline first */
	size_t		nheap, heapcap;
	TAILQ_HEAD(, wf_job) queue;	/* QUEUED jobs */
	int		nqueue;
	int		ncalling;	/* CALLING jobs: their steps run outside */
	struct wf_job	**sent;		/* the batch in flight, by n - 1 */
	int		nsent;
	int		writer_tries;	/* refused rounds in a row */
	struct twheel_timer writer_timer;
	struct event	*kick;		/* end of this loop turn: loads, starts, pump */
	json_t		*load_wf;	/* wf ids to load */
	json_t		*load_order;	/* order ids to load */
	struct smap	*waiting_reqs;	/* order id -> struct wf_req_list * (for a load) */
	struct smap	*loading;	/* order id -> struct wf_pending_load, while a load is out */
	struct wf_job	**choosing;	/* CHOOSING jobs */
	int		nchoosing, choosecap;
	bool		choosing_out;	/* their creators' rules are being read */
	int64_t		choosing_at;	/* when that read was sent (monotonic ms) */
	struct wf_begin	*begins;	/* starts to read */
	int		nbegins, begincap;
	struct smap	*creators;	/* creator id -> struct wf_creator */
	struct smap	*defs;		/* "creator:name:version" -> struct wf_def * */
	struct breaker	inventory;	/* the inventory breaker */
	struct lease_sweep *sweep;	/* worker 0: due runs nobody holds */
	struct twheel_timer stock_timer;	/* worker 0: stock rechecks */
	char		machine[ORDER_MACHINE_JSON_MAX];
	bool		closing;
	unsigned	freed;		/* jobs freed since the heap was last trimmed */
	struct wf_figures fig;
};

static void wf_kick(struct wf *wf);
static void wf_writer(struct wf *wf);
static void wf_job_free(struct wf_job *j);
static void wf_req_answer(struct wf_req *q, int status, const char *code, const char *msg,
    json_t *doc);
static void wf_job_after(struct wf_job *j, json_t *item);
static void wf_job_idle(struct wf_job *j);

/* ---- statements ---------------------------------------------------------------- */

/*
 * The runs named by id ($1) or order ($2), each leased when free.  Written
 * for the planner: an IN over one index each (an OR of the two made it
 * filter every live run), and the leased ones as an array, not a join
 * (estimated at a dozen rows, a join of CTEs became quadratic).
 */
static const char wf_load_sql[] =
    "WITH t AS (SELECT w.id FROM order_workflows w"
    "  WHERE w.id IN (SELECT unnest($1::uuid[]) UNION ALL SELECT x.id FROM order_workflows x"
    "  WHERE x.order_id = ANY ($2::uuid[]))"
    "  AND w.workflow_status IN ('running', 'waiting', 'paused', 'failed', 'compensating')"
    /* In id order: two daemons loading the same runs must not deadlock. */
    "  ORDER BY w.id FOR UPDATE),"
    " c AS (UPDATE order_workflows w SET lease_owner = $3,"
    "  lease_until = now() + $4::bigint * interval '1 millisecond' FROM t"
    "  WHERE w.id = t.id AND (w.lease_until IS NULL OR w.lease_until < now()"
    "  OR w.lease_owner = $3) RETURNING w.id),"
    " m AS (SELECT coalesce(array_agg(c.id), '{}') AS ids FROM c)"
    " SELECT w.id, w.order_id, w.user_id, w.tiktok_order_id, w.workflow_name,"
    "  w.definition_version, w.current_step, w.action_index, w.workflow_status, w.version,"
    "  w.attempt, w.seq, w.wait_kind, array_to_json(w.compensate)::text, w.end_status,"
    "  w.paused_from, w.terminal, w.cancel_decision IS NOT NULL, w.pending_trigger,"
    "  w.restart_with::text, (extract(epoch FROM w.deadline_at) * 1000)::bigint,"
    "  order_facts(w.order_id)::text, cr.untracked_skus, w.id = ANY (m.ids),"
    "  CASE WHEN w.definition_version > 0 THEN (SELECT d.definition::text"
    "  FROM workflow_definitions d WHERE d.user_id = w.user_id AND d.name = w.workflow_name"
    "  AND d.version = w.definition_version) END"
    " FROM t JOIN order_workflows w ON w.id = t.id CROSS JOIN m"
    " JOIN creators cr ON cr.id = w.user_id";

enum {
	WF_L_ID, WF_L_ORDER, WF_L_USER, WF_L_TIKTOK, WF_L_NAME, WF_L_DEFV, WF_L_STEP, WF_L_ACTION,
	WF_L_STATUS, WF_L_VERSION, WF_L_ATTEMPT, WF_L_SEQ, WF_L_WAIT, WF_L_COMP, WF_L_END,
	WF_L_PAUSED, WF_L_TERMINAL, WF_L_DECLINED, WF_L_PENDING, WF_L_RESTART, WF_L_DEADLINE,
	WF_L_FACTS, WF_L_POLICY, WF_L_MINE, WF_L_DEFDOC, WF_L_NCOLS
};

static const char wf_begin_sql[] =
    "SELECT o.id, o.user_id, o.tiktok_order_id,"
    " (extract(epoch FROM coalesce(o.rts_sla_time, o.shipping_due_time)) * 1000)::bigint,"
    " order_facts(o.id)::text, cr.untracked_skus, EXISTS (SELECT 1 FROM order_workflows w"
    "  WHERE w.order_id = o.id AND w.workflow_status IN ('running', 'waiting', 'paused',"
    "  'failed', 'compensating'))"
    " FROM orders o JOIN creators cr ON cr.id = o.user_id WHERE o.id = ANY ($1::uuid[])";

static const char wf_creators_sql[] =
    "SELECT u.id::text, (SELECT r.rules::text FROM workflow_rules r WHERE r.user_id = u.id),"
    " (SELECT json_object_agg(d.name, json_build_object('version', d.version,"
    "  'definition', d.definition))::text FROM (SELECT DISTINCT ON (x.name) x.name, x.version,"
    "  x.definition FROM workflow_definitions x WHERE x.user_id = u.id"
    "  ORDER BY x.name, x.version DESC) d)"
    " FROM unnest($1::uuid[]) AS u(id)";

static const char wf_commit_sql[] =
    "SELECT n, wf_id::text, verdict, outcome, missing, version"
    " FROM wf_commit($1::jsonb, $2, $3::bigint, $4::jsonb)";

static const char wf_claim_sql[] =
    "UPDATE order_workflows w SET lease_owner = $1,"
    " lease_until = now() + $2::bigint * interval '1 millisecond'"
    " FROM (SELECT x.id FROM order_workflows x WHERE x.retry_after IS NOT NULL"
    "  AND x.retry_after <= now() AND (x.lease_until IS NULL OR x.lease_until < now())"
    "  ORDER BY x.deadline_at NULLS LAST, x.retry_after LIMIT $3 FOR UPDATE SKIP LOCKED) c"
    " WHERE w.id = c.id RETURNING w.id::text, w.tiktok_order_id";

static const char wf_owners_sql[] =
    "SELECT DISTINCT lease_owner FROM order_workflows WHERE lease_until > now()"
    " AND lease_owner LIKE $1";

static const char wf_release_owner_sql[] =
    "UPDATE order_workflows SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1";

static const char wf_wake_sql[] = "SELECT wf_wake_stock($1::uuid, $2::integer)";

/* Give up the lease of a run loaded for nothing (a refused request): no new version. */
static const char wf_release_sql[] =
    "UPDATE order_workflows SET lease_owner = NULL, lease_until = NULL"
    " WHERE id = $1::uuid AND lease_owner = $2";

void
wf_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "wf_load", wf_load_sql);
	pg_pool_prepare(pg, "wf_begin", wf_begin_sql);
	pg_pool_prepare(pg, "wf_creators", wf_creators_sql);
	pg_pool_prepare(pg, "wf_commit", wf_commit_sql);
	pg_pool_prepare(pg, "wf_claim", wf_claim_sql);
	pg_pool_prepare(pg, "wf_owners", wf_owners_sql);
	pg_pool_prepare(pg, "wf_release_owner", wf_release_owner_sql);
	pg_pool_prepare(pg, "wf_wake", wf_wake_sql);
	pg_pool_prepare(pg, "wf_release", wf_release_sql);
}

static struct wf *
wf_of(struct worker *w)
{
	return w->svc[SERVICE_WF];
}

/* ---- figures ---------------------------------------------------------------- */

static int
wf_wait_index(const char *kind)
{
	int i;

	for (i = 0; wf_wait_kinds[i + 1] != NULL; i++)
		if (strcmp(wf_wait_kinds[i], kind) == 0)
			return i;
	return i;
}

/* The counters of (workflow, step), made on first use; "other" past the bound. */
static struct wf_label *
wf_label(struct wf *wf, const char *workflow, const char *step)
{
	int n = atomic_load_explicit(&wf->fig.nlabels, memory_order_relaxed);
	struct wf_label *l;

	for (int i = 0; i < n; i++)
		if (strcmp(wf->fig.labels[i].workflow, workflow) == 0 &&
		    strcmp(wf->fig.labels[i].step, step) == 0)
			return &wf->fig.labels[i];
	if (n == WF_LABELS_MAX)
		return &wf->fig.labels[WF_LABELS_MAX];
	l = &wf->fig.labels[n];
	snprintf(l->workflow, sizeof(l->workflow), "%s", workflow);
	snprintf(l->step, sizeof(l->step), "%s", step);
	/* Readers see the names before the count that covers them. */
	atomic_store_explicit(&wf->fig.nlabels, n + 1, memory_order_release);
	return l;
}

/* Count what a committed item did. */
static void
wf_count(struct wf_job *j, json_t *t, bool started)
{
	struct wf *wf = j->wf;
	const char *status = json_string_value(json_object_get(t, "status"));
	const char *final = json_string_value(json_object_get(t, "final"));
	const char *wait = json_string_value(json_object_get(t, "wait"));
	const char *wfname = j->run.def->name, *step = json_string_value(json_object_get(t, "step"));
	json_t *e;
	size_t i;

	if (started)
		util_count(&wf->fig.started, 1);
	json_array_foreach(json_object_get(t, "hist"), i, e) {
		const char *o = json_string_value(json_object_get(e, "outcome"));

		if (o == NULL)
			continue;
		if (strcmp(o, "transition") == 0)
			util_count(&wf_label(wf, wfname, json_string_value(json_object_get(e, "to")))->entered, 1);
		else if (strcmp(o, "retry") == 0)
			util_count(&wf->fig.retries, 1);
		else if (strcmp(o, "compensated") == 0)
			util_count(&wf->fig.compensations, 1);
	}
	if (status != NULL && strcmp(status, "waiting") == 0 && wait != NULL && step != NULL) {
		util_count(&wf->fig.waits[wf_wait_index(wait)], 1);
		util_count(&wf_label(wf, wfname, step)->waiting, 1);
	}
	if (status != NULL && strcmp(status, "failed") == 0 && step != NULL)
		util_count(&wf_label(wf, wfname, step)->failed, 1);
	if (final != NULL)
		util_count(strcmp(final, "completed") == 0 ? &wf->fig.completed :
		    strcmp(final, "cancelled") == 0 ? &wf->fig.cancelled : &wf->fig.failed, 1);
}

/* ---- the environment of a decision -------------------------------------------- */

static void
wf_env(struct wf *wf, struct wf_step_env *env)
{
	const struct config *cfg = wf->w->cfg;
	uint64_t now = worker_now_ms();

	memset(env, 0, sizeof(*env));
	env->now_ms = util_wall_ms();
	env->policy[WF_POLICY_WORKFLOW] = (struct backoff_policy){ (int)cfg->workflow.retry_attempts,
	    cfg->workflow.retry_base, cfg->workflow.retry_max,
	    (double)cfg->workflow.retry_multiplier / 100.0 };
	env->policy[WF_POLICY_INVENTORY] = (struct backoff_policy){
	    (int)cfg->inventory.retry_attempts, cfg->inventory.retry_base, cfg->inventory.retry_max,
	    (double)cfg->inventory.retry_multiplier / 100.0 };
	env->policy[WF_POLICY_SHIPPING] = (struct backoff_policy){
	    (int)cfg->shipping.retry_attempts, cfg->shipping.retry_base, cfg->shipping.retry_max,
	    2.0 };
	env->rnd = util_random();
	if (breaker_get_state(&wf->inventory) == BREAKER_OPEN) {
		env->inventory_open = true;
		env->inventory_wait_ms = wf->inventory.reset_at > now ?
		    (int64_t)(wf->inventory.reset_at - now) : 0;
	}
}

/* ---- the ready heap ------------------------------------------------------------- */

/* Earlier deadline first; no deadline last. */
static bool
wf_before(const struct wf_job *a, const struct wf_job *b)
{
	int64_t da = a->run.deadline_ms > 0 ? a->run.deadline_ms : INT64_MAX;
	int64_t db = b->run.deadline_ms > 0 ? b->run.deadline_ms : INT64_MAX;

	return da < db;
}

static void
wf_heap_set(struct wf *wf, size_t i, struct wf_job *j)
{
	wf->heap[i] = j;
	j->heap = i;
}

static void
wf_heap_up(struct wf *wf, size_t i)
{
	struct wf_job *j = wf->heap[i];

	while (i > 0 && wf_before(j, wf->heap[(i - 1) / 2])) {
		wf_heap_set(wf, i, wf->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	wf_heap_set(wf, i, j);
}

static void
wf_heap_down(struct wf *wf, size_t i)
{
	struct wf_job *j = wf->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= wf->nheap)
			break;
		if (c + 1 < wf->nheap && wf_before(wf->heap[c + 1], wf->heap[c]))
			c++;
		if (!wf_before(wf->heap[c], j))
			break;
		wf_heap_set(wf, i, wf->heap[c]);
		i = c;
	}
	wf_heap_set(wf, i, j);
}

static void
wf_ready(struct wf_job *j)
{
	struct wf *wf = j->wf;

	if (wf->nheap == wf->heapcap) {
		wf->heapcap = wf->heapcap ? wf->heapcap * 2 : 64;
		wf->heap = xrealloc(wf->heap, wf->heapcap * sizeof(*wf->heap));
	}
	j->phase = WF_JOB_READY;
	wf_heap_set(wf, wf->nheap++, j);
	wf_heap_up(wf, wf->nheap - 1);
	wf_kick(wf);
}

static void
wf_heap_remove(struct wf *wf, struct wf_job *j)
{
	size_t i = j->heap;
	struct wf_job *last = wf->heap[--wf->nheap];

	if (i == wf->nheap)
		return;
	wf_heap_set(wf, i, last);
	wf_heap_down(wf, i);
	wf_heap_up(wf, last->heap);
}

static struct wf_job *
wf_heap_pop(struct wf *wf)
{
	struct wf_job *j = wf->heap[0];

	wf_heap_remove(wf, j);
	return j;
}

/* ---- jobs --------------------------------------------------------------------------- */

static void
wf_on_job_timer(struct twheel_timer *t)
{
	wf_ready(container_of(t, struct wf_job, timer));
}

static struct wf_job *
wf_job_new(struct wf *wf, const char *order)
{
	struct wf_job *j = xcalloc(1, sizeof(*j));

	j->wf = wf;
	TAILQ_INIT(&j->reqs);
	twheel_timer_init(&j->timer, wf_on_job_timer);
	snprintf(j->run.order_id, sizeof(j->run.order_id), "%s", order);
	smap_put(wf->jobs, order, j);
	uset_del(wf->parked, order);
	atomic_store_explicit(&wf->fig.active, (long long)smap_count(wf->jobs),
	    memory_order_relaxed);
	atomic_store_explicit(&wf->fig.parked, (long long)uset_count(wf->parked),
	    memory_order_relaxed);
	return j;
}

/* Answer the requests still waiting for a job that goes away. */
static void
wf_job_drop_reqs(struct wf_job *j, int status, const char *code, const char *msg)
{
	struct wf_req *q;

	while ((q = TAILQ_FIRST(&j->reqs)) != NULL) {
		TAILQ_REMOVE(&j->reqs, q, entry);
		wf_req_answer(q, status, code, msg, NULL);
	}
	if (j->req != NULL) {
		wf_req_answer(j->req, status, code, msg, NULL);
		j->req = NULL;
	}
}

/* Take the job out of memory; park it when it waits for something. */
static void
wf_job_free(struct wf_job *j)
{
	struct wf *wf = j->wf;

	twheel_cancel(&j->timer);
	if (j->phase == WF_JOB_READY)
		wf_heap_remove(wf, j);
	else if (j->phase == WF_JOB_QUEUED) {
		TAILQ_REMOVE(&wf->queue, j, qentry);
		wf->nqueue--;
	}
	if (j->task != NULL) {
		ship_abandon(j->task);
		wf->ncalling--;
	}
	wf_job_drop_reqs(j, 503, "unavailable", "the workflow could not be reached; try again");
	if (smap_get(wf->jobs, j->run.order_id) == j)
		smap_del(wf->jobs, j->run.order_id);
	json_decref(j->item);
	wf_step_clear(&j->run);
	free(j);
	atomic_store_explicit(&wf->fig.active, (long long)smap_count(wf->jobs),
	    memory_order_relaxed);
	if (++wf->freed >= WF_TRIM_AFTER && smap_count(wf->jobs) == 0) {
		/* A backlog is through: what it held need not stay resident. */
		wf->freed = 0;
		util_trim_memory();
	}
}

static void
wf_park(struct wf_job *j)
{
	struct wf *wf = j->wf;
	char order[37];

	snprintf(order, sizeof(order), "%s", j->run.order_id);
	wf_job_free(j);
	if (!uset_add(wf->parked, order))
		log_error("workflow run not parked: its order id is not a UUID", "order=%s",
		    log_quote(order));
	atomic_store_explicit(&wf->fig.parked, (long long)uset_count(wf->parked),
	    memory_order_relaxed);
}

/* ---- loads ----------------------------------------------------------------------------- */

/* Load the live run of order (or of run id wf_id) with the next batch. */
static void
wf_want_load(struct wf *wf, const char *order, const char *wf_id)
{
	if (wf_id != NULL)
		json_array_append_new(wf->load_wf, json_string(wf_id));
	else
		json_array_append_new(wf->load_order, json_string(order));
	wf_kick(wf);
}

/* A load of orders was sent (loads = 1) or is over (-1). */
static void
wf_pending(struct wf *wf, json_t *orders, int loads)
{
	json_t *o;
	size_t i;

	json_array_foreach(orders, i, o) {
		struct wf_pending_load *p = smap_get(wf->loading, json_string_value(o));

		if (p == NULL && loads > 0) {
			p = xcalloc(1, sizeof(*p));
			smap_put(wf->loading, json_string_value(o), p);
		}
		if (p == NULL)
			continue;
		p->loads += loads;
		if (p->loads <= 0)
			free(smap_del(wf->loading, json_string_value(o)));
	}
}

/* The definition of a loaded run: a built-in, or the creator's version. */
static struct wf_def *
wf_row_def(struct wf *wf, PGresult *r, int i)
{
	const char *name = PQgetvalue(r, i, WF_L_NAME);
	int version = atoi(PQgetvalue(r, i, WF_L_DEFV));
	char key[200];
	struct wf_def *d;
	struct wf_err err;
	json_t *doc;

	if (version == 0)
		return wf_def_builtin(name);
	snprintf(key, sizeof(key), "%s:%s:%d", PQgetvalue(r, i, WF_L_USER), name, version);
	if ((d = smap_get(wf->defs, key)) != NULL)
		return d;
	if (PQgetisnull(r, i, WF_L_DEFDOC) ||
	    (doc = json_loads(PQgetvalue(r, i, WF_L_DEFDOC), 0, NULL)) == NULL)
		return NULL;
	d = wf_def_parse(doc, name, version, &err);
	json_decref(doc);
	if (d == NULL) {
		log_warn("stored workflow definition does not parse", "workflow=%s version=%d "
		    "path=%s error=%s", name, version, log_quote(err.path), log_quote(err.msg));
		return NULL;
	}
	if (smap_count(wf->defs) >= WF_DEF_CACHE_MAX) {
		smap_free(wf->defs, (void (*)(void *))wf_def_unref);
		wf->defs = smap_new();
	}
	smap_put(wf->defs, key, d);
	return d;
}

/*
 * Fill a run from a loaded row; false when its definition is gone.  A run
 * the sync started has no workflow yet (name ''): its def stays NULL until
 * the creator's rules choose one (wf_choosing).
 */
static bool
wf_row_run(struct wf *wf, struct wf_run *run, PGresult *r, int i)
{
	bool unnamed = PQgetvalue(r, i, WF_L_NAME)[0] == '\0';
	struct wf_def *d = unnamed ? NULL : wf_row_def(wf, r, i);
	json_t *comp;
	size_t k;

	if (d == NULL && !unnamed)
		return false;
	wf_step_clear(run);
	if (d != NULL) {
		wf_step_init(run, d);
		run->named = true;
	} else {
		memset(run, 0, sizeof(*run));
		run->end_status = run->paused_from = -1;
	}
	snprintf(run->id, sizeof(run->id), "%s", PQgetvalue(r, i, WF_L_ID));
	snprintf(run->order_id, sizeof(run->order_id), "%s", PQgetvalue(r, i, WF_L_ORDER));
	snprintf(run->creator, sizeof(run->creator), "%s", PQgetvalue(r, i, WF_L_USER));
	snprintf(run->tiktok_id, sizeof(run->tiktok_id), "%s", PQgetvalue(r, i, WF_L_TIKTOK));
	run->state = d != NULL ? wf_def_state(d, PQgetvalue(r, i, WF_L_STEP)) : -1;
	if (d != NULL && run->state < 0)
		run->state = d->initial;
	run->action = atoi(PQgetvalue(r, i, WF_L_ACTION));
	run->status = wf_status_parse(PQgetvalue(r, i, WF_L_STATUS));
	run->version = atoi(PQgetvalue(r, i, WF_L_VERSION));
	run->attempt = atoi(PQgetvalue(r, i, WF_L_ATTEMPT));
	run->seq = atoi(PQgetvalue(r, i, WF_L_SEQ));
	snprintf(run->wait, sizeof(run->wait), "%s", PQgetvalue(r, i, WF_L_WAIT));
	comp = json_loads(PQgetvalue(r, i, WF_L_COMP), 0, NULL);
	for (k = 0; k < json_array_size(comp) && run->ncomp < WF_STEP_MAX_COMP; k++) {
		int a = wf_action_find(json_string_value(json_array_get(comp, k)));

		if (a >= 0)
			run->comp[run->ncomp++] = a;
	}
	json_decref(comp);
	run->end_status = PQgetisnull(r, i, WF_L_END) ? -1 : wf_status_parse(PQgetvalue(r, i, WF_L_END));
	run->paused_from = PQgetisnull(r, i, WF_L_PAUSED) ? -1 :
	    wf_status_parse(PQgetvalue(r, i, WF_L_PAUSED));
	run->terminal = PQgetvalue(r, i, WF_L_TERMINAL)[0] == 't';
	run->cancel_declined = PQgetvalue(r, i, WF_L_DECLINED)[0] == 't';
	snprintf(run->pending, sizeof(run->pending), "%s", PQgetvalue(r, i, WF_L_PENDING));
	run->restart = PQgetisnull(r, i, WF_L_RESTART) ? NULL :
	    json_loads(PQgetvalue(r, i, WF_L_RESTART), 0, NULL);
	run->deadline_ms = strtoll(PQgetvalue(r, i, WF_L_DEADLINE), NULL, 10);
	run->facts = json_loads(PQgetvalue(r, i, WF_L_FACTS), 0, NULL);
	snprintf(run->policy, sizeof(run->policy), "%s", PQgetvalue(r, i, WF_L_POLICY));
	return run->status >= 0;
}

static void wf_choose_job(struct wf_job *j);

static void wf_req_run(struct wf_job *j, struct wf_req *q);

/* One load in flight: the requests that wait for its rows. */
struct wf_loading {
	struct wf	*wf;
	struct smap	*reqs;		/* order id -> struct wf_req_list * */
	json_t		*orders;	/* the order ids it loads */
	json_t		*wfs;		/* and the run ids */
};

static void
wf_loaded_row(struct wf *wf, struct smap *waiting, PGresult *r, int i)
{
	const char *order = PQgetvalue(r, i, WF_L_ORDER);
	struct wf_job *j = smap_get(wf->jobs, order);
	struct wf_req_list *reqs = smap_del(waiting, order);
	struct wf_pending_load *p;
	struct wf_req *q;
	bool mine = PQgetvalue(r, i, WF_L_MINE)[0] == 't';

	if (!mine || (j != NULL && (j->phase == WF_JOB_QUEUED || j->phase == WF_JOB_SENT ||
	    j->phase == WF_JOB_CHOOSING))) {
		/* Another process runs it, or our own commit is out: theirs to finish. */
		while (reqs != NULL && (q = TAILQ_FIRST(reqs)) != NULL) {
			TAILQ_REMOVE(reqs, q, entry);
			if (j != NULL && mine)
				TAILQ_INSERT_TAIL(&j->reqs, q, entry);
			else
				wf_req_answer(q, 409, "workflow_busy", "another process is running this "
				    "workflow step; try again in a moment", NULL);
		}
		free(reqs);
		return;
	}
	if (j == NULL)
		j = wf_job_new(wf, order);
	else if (j->phase == WF_JOB_READY)
		wf_heap_remove(wf, j);
	else
		twheel_cancel(&j->timer);
	p = smap_get(wf->loading, order);
	/* Changed while this load was out: its facts may be older than the change. */
	j->reload = p != NULL && p->dirty;
	if (p != NULL)
		p->dirty = false;
	if (!wf_row_run(wf, &j->run, r, i)) {
		log_warn("workflow run cannot be loaded: unknown definition or status", "order=%s",
		    order);
		j->phase = WF_JOB_TIMER;
		wf_job_free(j);
		free(reqs);
		return;
	}
	while (reqs != NULL && (q = TAILQ_FIRST(reqs)) != NULL) {
		TAILQ_REMOVE(reqs, q, entry);
		TAILQ_INSERT_TAIL(&j->reqs, q, entry);
	}
	free(reqs);
	j->phase = WF_JOB_TIMER;	/* idle, off every list */
	if (j->run.def == NULL)
		wf_choose_job(j);
	else
		wf_job_idle(j);
}

/* Answer the requests of a load that found no live run (or failed). */
static void
wf_reqs_unloaded(struct smap *waiting, const char *error)
{
	const char *k;
	void *v;
	size_t pos = 0;

	while (smap_next(waiting, &pos, &k, &v)) {
		struct wf_req_list *reqs = v;
		struct wf_req *q;

		while ((q = TAILQ_FIRST(reqs)) != NULL) {
			TAILQ_REMOVE(reqs, q, entry);
			if (error != NULL)
				wf_req_answer(q, 503, "unavailable", error, NULL);
			else if (q->action < 0)
				wf_req_run(NULL, q);
			else
				wf_req_answer(q, 404, "not_found", "the order has no live workflow", NULL);
		}
	}
	smap_free(waiting, free);
}

static void
wf_on_load(struct pg_batch *b, void *arg)
{
	struct wf_loading *ld = arg;
	PGresult *r = pg_batch_result(b, 0);
	bool ok = pg_batch_error(b) == NULL && r != NULL && PQnfields(r) == WF_L_NCOLS;

	if (ok && !ld->wf->closing) {
		log_debug("workflow runs loaded", "rows=%d", PQntuples(r));
		for (int i = 0; i < PQntuples(r); i++)
			wf_loaded_row(ld->wf, ld->reqs, r, i);
	}
	else if (!ok && !ld->wf->closing && (strcmp(pg_batch_sqlstate(b), "40P01") == 0 ||
	    strcmp(pg_batch_sqlstate(b), "40001") == 0)) {
		/*
		 * Lost a race for the rows (another process loading or committing
		 * them): load them again now.  Left alone they would wait for the
		 * sweep, which takes a run only once this process's lease is over.
		 */
		log_info("workflow load lost a race; loading again", "error=%s",
		    log_quote(pg_batch_error(b)));
		json_array_extend(ld->wf->load_order, ld->orders);
		json_array_extend(ld->wf->load_wf, ld->wfs);
		wf_kick(ld->wf);
	} else if (!ok)
		log_warn("workflow load failed; the claim sweep will retry",
		    "error=%s", log_quote(pg_batch_error(b)));
	wf_reqs_unloaded(ld->reqs, ok && !ld->wf->closing ? NULL :
	    "the workflow cannot be read now");
	if (!ld->wf->closing)
		wf_pending(ld->wf, ld->orders, -1);
	json_decref(ld->orders);
	json_decref(ld->wfs);
	free(ld);
}

/* Send the loads gathered this turn. */
static void
wf_flush_loads(struct wf *wf)
{
	char lease[24], *a, *o;
	struct wf_loading *ld;
	struct pg_batch *b;

	if (json_array_size(wf->load_wf) == 0 && json_array_size(wf->load_order) == 0)
		return;
	a = json_dumps(wf->load_wf, JSON_COMPACT);
	o = json_dumps(wf->load_order, JSON_COMPACT);
	/* JSON arrays of strings are PostgreSQL array literals once the brackets are braces. */
	a[0] = '{', a[strlen(a) - 1] = '}';
	o[0] = '{', o[strlen(o) - 1] = '}';
	snprintf(lease, sizeof(lease), "%lld", (long long)wf->w->cfg->workflow.lease);
	ld = xmalloc(sizeof(*ld));
	*ld = (struct wf_loading){ wf, wf->waiting_reqs, json_copy(wf->load_order),
	    json_copy(wf->load_wf) };
	wf->waiting_reqs = smap_new();
	wf_pending(wf, ld->orders, 1);
	b = pg_batch_new(wf_on_load, ld);
	pg_batch_add(b, true, "wf_load", 4, (const char *[]){ a, o, wf->w->set->instance, lease });
	json_array_clear(wf->load_wf);
	json_array_clear(wf->load_order);
	free(a);
	free(o);
	if (pg_submit(wf->w->pg, b) != PG_OK) {
		/* The rows stay due in the database: the sweep comes back for them. */
		wf_reqs_unloaded(ld->reqs, "database unavailable");
		wf_pending(wf, ld->orders, -1);
		json_decref(ld->orders);
		json_decref(ld->wfs);
		free(ld);
	}
}

/* ---- creators: rules and definitions -------------------------------------------- */

static void
wf_creator_free(void *v)
{
	struct wf_creator *c = v;

	wf_rules_free(c->rules);
	smap_free(c->latest, (void (*)(void *))wf_def_unref);
	free(c);
}

static bool
wf_creator_fresh(struct wf *wf, const char *creator)
{
	struct wf_creator *c = smap_get(wf->creators, creator);

	return c != NULL && worker_now_ms() - (uint64_t)c->at_ms <
	    (uint64_t)wf->w->cfg->workflow.rules_cache;
}

/* A creator's row of wf_creators into the cache. */
static void
wf_creator_store(struct wf *wf, PGresult *r, int i)
{
	struct wf_creator *c = xcalloc(1, sizeof(*c)), *old;
	json_t *defs = PQgetisnull(r, i, 2) ? NULL : json_loads(PQgetvalue(r, i, 2), 0, NULL);
	json_t *rules = PQgetisnull(r, i, 1) ? NULL : json_loads(PQgetvalue(r, i, 1), 0, NULL);
	const char **known = xcalloc(json_object_size(defs) + 1, sizeof(char *)), *name;
	struct wf_err err;
	json_t *v;
	int n = 0;

	c->latest = smap_new();
	c->at_ms = (int64_t)worker_now_ms();
	json_object_foreach(defs, name, v) {
		struct wf_def *d = wf_def_parse(json_object_get(v, "definition"), name,
		    (int)json_integer_value(json_object_get(v, "version")), &err);

		if (d == NULL) {
			log_warn("stored workflow definition does not parse", "workflow=%s path=%s "
			    "error=%s", name, log_quote(err.path), log_quote(err.msg));
			continue;
		}
		smap_put(c->latest, name, d);
		known[n++] = d->name;
	}
	if (rules != NULL && (c->rules = wf_rules_parse(rules, known, &err)) == NULL)
		log_warn("stored workflow rules do not parse; the default applies", "creator=%s "
		    "path=%s error=%s", PQgetvalue(r, i, 0), log_quote(err.path), log_quote(err.msg));
	free(known);
	json_decref(defs);
	json_decref(rules);
	if ((old = smap_put(wf->creators, PQgetvalue(r, i, 0), c)) != NULL)
		wf_creator_free(old);
}

/* The definition a new order of creator starts: named, or by the rules. */
static struct wf_def *
wf_choose(struct wf *wf, const char *creator, json_t *facts, const char *name)
{
	struct wf_creator *c = smap_get(wf->creators, creator);
	struct wf_def *d;

	if (name == NULL)
		name = c != NULL && c->rules != NULL ? wf_rules_choose(c->rules, facts) :
		    "standard_fulfillment";
	if (c != NULL && (d = smap_get(c->latest, name)) != NULL)
		return d;
	if ((d = wf_def_builtin(name)) != NULL)
		return d;
	log_warn("a rule names an unknown workflow; standard_fulfillment runs", "workflow=%s",
	    name);
	return wf_def_builtin("standard_fulfillment");
}

/* ---- runs the sync started: the creator's rules choose the workflow ---------- */

/* "{a,b}": ids as a PostgreSQL uuid[] literal. */
static void
wf_id_list(struct evbuffer *buf, const char *id, bool *first)
{
	evbuffer_add_printf(buf, "%s%s", *first ? "" : ",", id);
	*first = false;
}

/* Give j its definition, chosen by its creator's rules (now in the cache). */
static void
wf_chosen(struct wf_job *j)
{
	struct wf_def *d = wf_choose(j->wf, j->run.creator, j->run.facts, NULL);

	j->run.def = wf_def_ref(d);
	j->run.state = d->initial;
	j->phase = WF_JOB_TIMER;
	wf_job_idle(j);
}

static void
wf_choose_job(struct wf_job *j)
{
	struct wf *wf = j->wf;

	if (wf_creator_fresh(wf, j->run.creator)) {
		wf_chosen(j);
		return;
	}
	if (wf->nchoosing == wf->choosecap) {
		wf->choosecap = wf->choosecap ? wf->choosecap * 2 : 64;
		wf->choosing = xrealloc(wf->choosing, (size_t)wf->choosecap * sizeof(*wf->choosing));
	}
	j->phase = WF_JOB_CHOOSING;
	wf->choosing[wf->nchoosing++] = j;
	wf_kick(wf);
}

/*
 * The CHOOSING jobs whose creator is in the cache get their workflow; the
 * others wait for the next read, or (failed: true) get the default now.
 */
static void
wf_choose_all(struct wf *wf, bool failed)
{
	struct wf_job **js = wf->choosing;
	int n = wf->nchoosing;

	wf->choosing = NULL;
	wf->nchoosing = wf->choosecap = 0;
	for (int i = 0; i < n; i++) {
		struct wf_creator *c = smap_get(wf->creators, js[i]->run.creator);

		if (failed || (c != NULL && c->at_ms >= wf->choosing_at))
			wf_chosen(js[i]);
		else
			wf_choose_job(js[i]);
	}
	free(js);
}

static void
wf_on_choose(struct pg_batch *b, void *arg)
{
	struct wf *wf = arg;
	PGresult *r = pg_batch_result(b, 0);
	wf->choosing_out = false;
	if (wf->closing)
		return;
	if (pg_batch_error(b) == NULL && r != NULL && PQnfields(r) == 3) {
		for (int i = 0; i < PQntuples(r); i++)
			wf_creator_store(wf, r, i);
		wf_choose_all(wf, false);
	} else {
		log_warn("workflow rules cannot be read; the default applies for now", "error=%s",
		    log_quote(pg_batch_error(b)));
		wf_choose_all(wf, true);
	}
}

/* Read the rules of the creators the CHOOSING jobs wait for. */
static void
wf_flush_choosing(struct wf *wf)
{
	struct evbuffer *ids;
	struct pg_batch *b;
	bool first = true;

	if (wf->nchoosing == 0 || wf->choosing_out)
		return;
	ids = evbuffer_new();
	evbuffer_add(ids, "{", 1);
	for (int i = 0; i < wf->nchoosing; i++) {
		bool seen = false;

		for (int k = 0; k < i; k++)
			seen |= strcmp(wf->choosing[k]->run.creator, wf->choosing[i]->run.creator) == 0;
		if (!seen)
			wf_id_list(ids, wf->choosing[i]->run.creator, &first);
	}
	evbuffer_add(ids, "}", 2);
	b = pg_batch_new(wf_on_choose, wf);
	pg_batch_add(b, true, "wf_creators", 1, (const char *[]){
	    (const char *)evbuffer_pullup(ids, -1) });
	evbuffer_free(ids);
	wf->choosing_at = (int64_t)worker_now_ms();
	if (pg_submit(wf->w->pg, b) == PG_OK)
		wf->choosing_out = true;
	else
		wf_choose_all(wf, true);
}

/* ---- starts ------------------------------------------------------------------------ */

static void
wf_want_start(struct wf *wf, const char *order, const char *creator, struct wf_req *req)
{
	for (int i = 0; i < wf->nbegins; i++)
		if (strcmp(wf->begins[i].order, order) == 0 && req == NULL)
			return;
	if (wf->nbegins == wf->begincap) {
		wf->begincap = wf->begincap ? wf->begincap * 2 : 64;
		wf->begins = xrealloc(wf->begins, (size_t)wf->begincap * sizeof(*wf->begins));
	}
	wf->begins[wf->nbegins] = (struct wf_begin){ .req = req };
	snprintf(wf->begins[wf->nbegins].order, sizeof(wf->begins[0].order), "%s", order);
	snprintf(wf->begins[wf->nbegins].creator, sizeof(wf->begins[0].creator), "%s", creator);
	wf->nbegins++;
	wf_kick(wf);
}

/* One read of starts in flight. */
struct wf_beginning {
	struct wf	*wf;
	struct wf_begin	*begins;
	int		n;
};

static struct wf_begin *
wf_begin_of(struct wf_beginning *bg, const char *order)
{
	for (int i = 0; i < bg->n; i++)
		if (strcmp(bg->begins[i].order, order) == 0)
			return &bg->begins[i];
	return NULL;
}

/* A row of wf_begin: the run of a new order, or why there is none. */
static void
wf_begun(struct wf *wf, struct wf_begin *bg, PGresult *r, int i)
{
	const char *order = PQgetvalue(r, i, 0);
	json_t *facts = json_loads(PQgetvalue(r, i, 4), 0, NULL);
	struct wf_req *q = bg->req;
	struct wf_job *j;

	if (PQgetvalue(r, i, 6)[0] == 't' || smap_get(wf->jobs, order) != NULL) {
		json_decref(facts);
		if (q != NULL)
			wf_req_answer(q, 409, "workflow_running", "a workflow is already live for the "
			    "order; send \"force_restart\": true to replace it", NULL);
		bg->req = NULL;
		return;
	}
	j = wf_job_new(wf, order);
	wf_step_init(&j->run, wf_choose(wf, PQgetvalue(r, i, 1), facts, q != NULL ? q->name : NULL));
	snprintf(j->run.order_id, sizeof(j->run.order_id), "%s", order);
	snprintf(j->run.creator, sizeof(j->run.creator), "%s", PQgetvalue(r, i, 1));
	snprintf(j->run.tiktok_id, sizeof(j->run.tiktok_id), "%s", PQgetvalue(r, i, 2));
	j->run.deadline_ms = PQgetisnull(r, i, 3) ? 0 : strtoll(PQgetvalue(r, i, 3), NULL, 10);
	j->run.facts = facts;
	snprintf(j->run.policy, sizeof(j->run.policy), "%s", PQgetvalue(r, i, 5));
	if (q != NULL && q->config != NULL)
		j->run.config = json_loads(q->config, 0, NULL);
	/* The request is the start itself: its first commit answers it. */
	j->req = q;
	bg->req = NULL;
	wf_ready(j);
}

static void
wf_on_begin(struct pg_batch *b, void *arg)
{
	struct wf_beginning *bg = arg;
	struct wf *wf = bg->wf;
	PGresult *orders = pg_batch_result(b, 0), *creators = pg_batch_result(b, 1);
	bool ok = pg_batch_error(b) == NULL && orders != NULL && creators != NULL &&
	    PQnfields(orders) == 7 && !wf->closing;

	if (ok) {
		for (int i = 0; i < PQntuples(creators); i++)
			wf_creator_store(wf, creators, i);
		for (int i = 0; i < PQntuples(orders); i++) {
			struct wf_begin *one = wf_begin_of(bg, PQgetvalue(orders, i, 0));

			if (one != NULL)
				wf_begun(wf, one, orders, i);
		}
	} else if (!wf->closing) {
		/*
		 * The orders are committed but their runs are not: they start
		 * when the order is next synced, or by POST .../workflow.
		 */
		log_warn("workflow starts failed", "orders=%d error=%s", bg->n,
		    log_quote(pg_batch_error(b)));
	}
	for (int i = 0; i < bg->n; i++)
		if (bg->begins[i].req != NULL)
			wf_req_answer(bg->begins[i].req, ok ? 404 : 503, ok ? "not_found" : "unavailable",
			    ok ? "no such order" : "the workflow cannot be started now", NULL);
	free(bg->begins);
	free(bg);
}

static void
wf_flush_begins(struct wf *wf)
{
	struct evbuffer *orders, *creators;
	struct wf_beginning *bg;
	struct pg_batch *b;
	bool fo = true, fc = true;

	if (wf->nbegins == 0)
		return;
	orders = evbuffer_new();
	creators = evbuffer_new();
	evbuffer_add(orders, "{", 1);
	evbuffer_add(creators, "{", 1);
	for (int i = 0; i < wf->nbegins; i++) {
		bool seen = false;

		wf_id_list(orders, wf->begins[i].order, &fo);
		for (int k = 0; k < i; k++)
			seen |= strcmp(wf->begins[k].creator, wf->begins[i].creator) == 0;
		if (!seen && !wf_creator_fresh(wf, wf->begins[i].creator))
			wf_id_list(creators, wf->begins[i].creator, &fc);
	}
	evbuffer_add(orders, "}", 2);
	evbuffer_add(creators, "}", 2);
	bg = xmalloc(sizeof(*bg));
	*bg = (struct wf_beginning){ wf, wf->begins, wf->nbegins };
	wf->begins = NULL;
	wf->nbegins = wf->begincap = 0;
	b = pg_batch_new(wf_on_begin, bg);
	pg_batch_add(b, true, "wf_begin", 1, (const char *[]){
	    (const char *)evbuffer_pullup(orders, -1) });
	pg_batch_add(b, true, "wf_creators", 1, (const char *[]){
	    (const char *)evbuffer_pullup(creators, -1) });
	evbuffer_free(orders);
	evbuffer_free(creators);
	if (pg_submit(wf->w->pg, b) != PG_OK) {
		log_warn("workflow starts not sent: database unavailable", "orders=%d", bg->n);
		for (int i = 0; i < bg->n; i++)
			if (bg->begins[i].req != NULL)
				wf_req_answer(bg->begins[i].req, 503, "unavailable", "database unavailable",
				    NULL);
		free(bg->begins);
		free(bg);
	}
}

/* ---- deciding and committing --------------------------------------------------------- */

/* The action a commit is about, for the latency histogram. */
static int
wf_item_action(json_t *item)
{
	json_t *then = json_object_get(item, "then"), *hist;

	if (json_object_get(then, "step") == NULL)
		then = json_object_get(then, "ok");
	hist = json_object_get(then, "hist");
	for (size_t i = json_array_size(hist); i > 0; i--) {
		int a = wf_action_find(json_string_value(json_object_get(json_array_get(hist, i - 1),
		    "action")));

		if (a >= 0)
			return a;
	}
	return WF_A_COUNT;
}

static void wf_call(struct wf_job *j, json_t *item);

static void
wf_queue(struct wf_job *j, json_t *item)
{
	struct wf *wf = j->wf;
	const char *effect = json_string_value(json_object_get(item, "effect"));

	if (effect != NULL && strcmp(effect, "call") == 0 &&
	    json_object_get(json_object_get(item, "then"), "step") == NULL) {
		wf_call(j, item);
		return;
	}
	json_decref(j->item);
	j->item = item;
	j->decided_us = util_mono_us();
	j->metric_action = wf_item_action(item);
	j->phase = WF_JOB_QUEUED;
	TAILQ_INSERT_TAIL(&wf->queue, j, qentry);
	wf->nqueue++;
	wf_kick(wf);
}

/* ---- steps outside the database ----------------------------------------------- */

static void
wf_on_called(const struct ship_outcome *o, void *arg)
{
	struct wf_job *j = arg;
	struct wf_step_env env;
	json_t *item = j->item;

	if (j->task != NULL)
		j->wf->ncalling--;
	j->task = NULL;
	j->item = NULL;
	j->phase = WF_JOB_TIMER;
	if (o->verdict == SHIP_DONE) {
		wf_step_call_done(item, o->error);
		wf_queue(j, item);
		return;
	}
	if (o->verdict == SHIP_RETRY)
		util_count(&j->wf->fig.retries, 1);
	wf_env(j->wf, &env);
	wf_queue(j, wf_step_call_failed(&j->run, &env, item, o->verdict == SHIP_RETRY ?
	    WF_CALL_RETRY : o->verdict == SHIP_WAIT ? WF_CALL_WAIT : WF_CALL_FAIL, o->error,
	    o->delay_ms));
	json_decref(item);
}

/* Run the call of item (taken); its commit is queued when it is back. */
static void
wf_call(struct wf_job *j, json_t *item)
{
	json_t *call = json_object_get(item, "call");
	int a = wf_action_find(json_string_value(json_object_get(call, "action")));
	const struct wf_action_info *ai = wf_action_info(a);

	json_decref(j->item);
	j->item = item;
	j->phase = WF_JOB_CALLING;
	if (ai == NULL || ai->call < 0) {
		/* Cannot happen: wf_step only makes calls of call actions. */
		log_error("workflow call of an unknown action", "order=%s", j->run.order_id);
		j->phase = WF_JOB_TIMER;
		j->item = NULL;
		json_decref(item);
		wf_job_free(j);
		return;
	}
	j->task = ship_run(j->wf->w, (enum ship_step)ai->call, j->run.order_id, j->run.creator,
	    json_string_value(json_object_get(call, "key")), wf_on_called, j);
	if (j->task != NULL)
		j->wf->ncalling++;
	else {
		struct ship_outcome o = { .verdict = SHIP_RETRY, .error = "the database is unavailable" };

		wf_on_called(&o, j);
	}
}

/* Decide the ready jobs, earliest deadline first, while the writer has room. */
static void
wf_pump(struct wf *wf)
{
	struct wf_step_env env;
	int64_t room = wf->w->cfg->workflow.max_batch * 2;

	wf_env(wf, &env);
	while (wf->nheap > 0 && wf->nqueue < room && wf->ncalling < WF_CALLS_MAX) {
		struct wf_job *j = wf_heap_pop(wf);
		json_t *item;

		j->phase = WF_JOB_TIMER;
		if ((item = wf_step_next(&j->run, &env)) == NULL) {
			wf_job_free(j);
			continue;
		}
		wf_queue(j, item);
		env.rnd = util_random();
	}
}

static int
wf_sent_cmp(const void *a, const void *b)
{
	const struct wf_job *x = *(struct wf_job *const *)a, *y = *(struct wf_job *const *)b;

	return wf_before(x, y) ? -1 : wf_before(y, x) ? 1 : 0;
}

/* Errors that say nothing about the items: connection, shutdown, contention. */
static bool
wf_transient(const char *sqlstate)
{
	return sqlstate[0] == '\0' || strncmp(sqlstate, "08", 2) == 0 ||
	    strncmp(sqlstate, "57P", 3) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
	    strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0;
}

static void wf_on_commit(struct pg_batch *b, void *arg);

/* Put the batch in flight back at the head of the queue. */
static void
wf_requeue_sent(struct wf *wf, bool solo)
{
	for (int i = wf->nsent - 1; i >= 0; i--) {
		struct wf_job *j = wf->sent[i];

		j->phase = WF_JOB_QUEUED;
		j->solo = solo;
		TAILQ_INSERT_HEAD(&wf->queue, j, qentry);
		wf->nqueue++;
	}
	wf->nsent = 0;
}

static void
wf_on_writer_timer(struct twheel_timer *t)
{
	wf_writer(container_of(t, struct wf, writer_timer));
}

/* The database refused or lost a round: the same round again, later. */
static void
wf_writer_backoff(struct wf *wf)
{
	static const struct backoff_policy pol = { 1000000, WF_WRITER_MIN_MS, WF_WRITER_MAX_MS, 2.0 };

	wf_requeue_sent(wf, false);
	twheel_add(wf->w->wheel, &wf->writer_timer, worker_now_ms() +
	    (uint64_t)backoff_delay(&pol, ++wf->writer_tries, util_random()));
}

/* Send one round: the queued commits in deadline order, or one job on its own. */
static void
wf_writer(struct wf *wf)
{
	int max = (int)wf->w->cfg->workflow.max_batch;
	json_t *items;
	struct wf_job *j, *next;
	char lease[24], *json;
	struct pg_batch *b;

	if (wf->nsent > 0 || wf->nqueue == 0 || twheel_pending(&wf->writer_timer) || wf->closing)
		return;
	wf->sent = xrealloc(wf->sent, (size_t)max * sizeof(*wf->sent));
	for (j = TAILQ_FIRST(&wf->queue); j != NULL && wf->nsent < max; j = next) {
		next = TAILQ_NEXT(j, qentry);
		if (j->solo && wf->nsent > 0)
			continue;
		TAILQ_REMOVE(&wf->queue, j, qentry);
		wf->nqueue--;
		j->phase = WF_JOB_SENT;
		wf->sent[wf->nsent++] = j;
		if (j->solo)
			break;
	}
	qsort(wf->sent, (size_t)wf->nsent, sizeof(*wf->sent), wf_sent_cmp);
	items = json_array();
	for (int i = 0; i < wf->nsent; i++) {
		json_object_set_new(wf->sent[i]->item, "n", json_integer(i + 1));
		json_array_append(items, wf->sent[i]->item);
	}
	json = json_dumps(items, JSON_COMPACT);
	json_decref(items);
	snprintf(lease, sizeof(lease), "%lld", (long long)wf->w->cfg->workflow.lease);
	b = pg_batch_new(wf_on_commit, wf);
	pg_batch_add(b, true, "wf_commit", 4, (const char *[]){ json, wf->w->set->instance, lease,
	    wf->machine });
	free(json);
	if (pg_submit(wf->w->pg, b) != PG_OK)
		wf_writer_backoff(wf);
}

/* Tell the requester how its action went, now that it committed. */
static void
wf_answer_done(struct wf_job *j, struct wf_req *q, const char *outcome)
{
	char allowed[256];
	json_t *doc;

	wf_step_allowed_json(wf_step_allowed(&j->run), allowed, sizeof(allowed));
	if (q->action < 0 && q->force)
		doc = json_pack("{s:b,s:s?,s:s,s:s}", "success", 1, "workflow_id", outcome,
		    "replaced", j->run.id, "status", wf_status_name(j->run.status));
	else if (q->action < 0)
		doc = json_pack("{s:b,s:s,s:s,s:s}", "success", 1, "workflow_id", j->run.id,
		    "workflow_name", j->run.def->name, "status", wf_status_name(j->run.status));
	else
		doc = json_pack("{s:b,s:{s:s,s:s,s:s,s:s?,s:i,s:o}}", "success", 1, "workflow",
		    "id", j->run.id, "status", wf_status_name(j->run.status), "current_step",
		    j->run.def->states[j->run.state].name, "wait_kind",
		    j->run.wait[0] ? j->run.wait : NULL, "version", j->run.version,
		    "allowed_actions", json_loads(allowed, 0, NULL));
	wf_req_answer(q, 200, NULL, NULL, doc);
	json_decref(doc);
}

/* One row of wf_commit for the job that sent item n. */
static void
wf_committed(struct wf *wf, struct wf_job *j, PGresult *r, int i)
{
	const char *verdict = PQgetvalue(r, i, 2), *outcome = PQgetisnull(r, i, 3) ? NULL :
	    PQgetvalue(r, i, 3);
	json_t *item = j->item, *t;
	bool is_new = j->run.id[0] == '\0' || !j->run.named;
	struct order_change ch = { .kind = ORDER_CHANGE_WORKFLOW, .order_status = -1 };

	j->item = NULL;
	j->solo = false;
	metrics_hist_observe(&wf->fig.latency[j->metric_action], util_mono_us() - j->decided_us);
	if (strcmp(verdict, "ok") != 0) {
		util_count(&wf->fig.stale, 1);
		log_debug("workflow commit not applied", "order=%s verdict=%s", j->run.order_id,
		    verdict);
		wf_job_drop_reqs(j, 409, strcmp(verdict, "exists") == 0 ? "workflow_running" :
		    "workflow_changed", strcmp(verdict, "exists") == 0 ? "a workflow is already "
		    "live for the order" : "the workflow changed meanwhile; read it again");
		json_decref(item);
		wf_job_free(j);
		return;
	}
	if (j->run.id[0] == '\0')
		snprintf(j->run.id, sizeof(j->run.id), "%s", PQgetvalue(r, i, 1));
	if (json_object_get(item, "effect") != NULL &&
	    strcmp(json_string_value(json_object_get(item, "effect")), "reserve") == 0) {
		breaker_success(&wf->inventory, worker_now_ms());
		util_count(outcome == NULL || strcmp(outcome, "ok") == 0 ? &wf->fig.reserved :
		    strcmp(outcome, "nostock") == 0 ? &wf->fig.backorders : &wf->fig.untracked, 1);
	} else if (json_object_get(item, "effect") != NULL &&
	    strcmp(json_string_value(json_object_get(item, "effect")), "release") == 0) {
		/* Released stock may serve runs waiting for it (consumed stock frees none). */
		wf_stock_changed(wf->w, j->run.creator);
	}
	t = json_object_get(item, "then");
	if (json_object_get(t, "step") == NULL)
		t = json_object_get(t, outcome != NULL ? outcome : "ok");
	wf_count(j, t, is_new);
	wf_step_committed(&j->run, item, outcome, atoi(PQgetvalue(r, i, 5)));
	ch.creator = j->run.creator;
	ch.id = j->run.order_id;
	ch.tiktok_id = j->run.tiktok_id;
	ostore_changed(wf->w, &ch);
	if (j->req != NULL && !(j->req->action < 0 && j->req->force && outcome == NULL &&
	    j->run.status == WF_COMPENSATING)) {
		struct wf_req *q = j->req;

		/* A restart is answered once the old run has ended and the new one exists. */
		j->req = NULL;
		wf_answer_done(j, q, outcome);
	}
	wf_job_after(j, t);
	json_decref(item);
}

static void
wf_on_commit(struct pg_batch *b, void *arg)
{
	struct wf *wf = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *error = pg_batch_error(b);
	struct wf_step_env env;

	if (wf->closing) {
		for (int i = 0; i < wf->nsent; i++)
			wf_job_free(wf->sent[i]);
		wf->nsent = 0;
		return;
	}
	if (error == NULL && (r == NULL || PQnfields(r) != 6))
		error = "unexpected result of wf_commit";
	if (error == NULL) {
		int n = wf->nsent;

		wf->writer_tries = 0;
		log_debug("workflow commit", "items=%d", n);
		util_count(&wf->fig.commits, 1);
		util_count(&wf->fig.commit_items, (unsigned long long)n);
		wf->nsent = 0;
		for (int i = 0; i < PQntuples(r); i++) {
			int k = atoi(PQgetvalue(r, i, 0)) - 1;

			if (k >= 0 && k < n && wf->sent[k] != NULL) {
				struct wf_job *j = wf->sent[k];

				wf->sent[k] = NULL;
				wf_committed(wf, j, r, i);
			}
		}
		for (int k = 0; k < n; k++)
			if (wf->sent[k] != NULL)
				wf_job_free(wf->sent[k]);
		wf_kick(wf);
		return;
	}
	util_count(&wf->fig.commit_errors, 1);
	if (strcmp(pg_batch_sqlstate(b), "40001") == 0 && wf->writer_tries == 0) {
		/* Stock taken by another commit since it was read (inventory_take): decide again now. */
		log_debug("workflow commit lost a race for stock; again", "items=%d", wf->nsent);
		wf->writer_tries++;
		wf_requeue_sent(wf, false);
		wf_kick(wf);
		return;
	}
	if (wf_transient(pg_batch_sqlstate(b))) {
		log_info("workflow commit failed, will retry", "items=%d error=%s", wf->nsent,
		    log_quote(error));
		wf_writer_backoff(wf);
		return;
	}
	if (wf->nsent > 1) {
		/* Someone in the round is at fault: each one alone finds out who. */
		log_info("workflow commit refused; committing one by one", "items=%d error=%s",
		    wf->nsent, log_quote(error));
		wf_requeue_sent(wf, true);
		wf_kick(wf);
		return;
	}
	/* This job's commit is refused: its step failed. */
	{
		struct wf_job *j = wf->sent[0];
		json_t *effect = json_object_get(j->item, "effect");

		wf->nsent = 0;
		if (effect == NULL) {
			/*
			 * A commit without an effect can only be refused by a bug or by
			 * data the engine does not know: leave the row as it is, the
			 * sweep takes it up again once the lease has passed.
			 */
			log_error("workflow commit refused", "order=%s workflow=%s error=%s",
			    j->run.order_id, j->run.id, log_quote(error));
			wf_job_free(j);
			return;
		}
		if (strcmp(json_string_value(effect), "reserve") == 0)
			breaker_failure(&wf->inventory, worker_now_ms());
		log_warn("workflow step failed", "order=%s error=%s", j->run.order_id, log_quote(error));
		wf_env(wf, &env);
		j->solo = false;
		wf_queue(j, wf_step_effect_failed(&j->run, &env, error, j->item));
		if (j->req != NULL) {
			wf_req_answer(j->req, 503, "unavailable", "the workflow step failed", NULL);
			j->req = NULL;
		}
	}
}

/* ---- after a commit, and when idle ---------------------------------------------- */

/* The job is off every list: serve a waiting request, reload, or decide. */
static void
wf_job_idle(struct wf_job *j)
{
	struct wf_req *q;

	if (j->req == NULL && (q = TAILQ_FIRST(&j->reqs)) != NULL) {
		TAILQ_REMOVE(&j->reqs, q, entry);
		wf_req_run(j, q);
		return;
	}
	if (j->reload) {
		j->reload = false;
		wf_want_load(j->wf, j->run.order_id, NULL);
		return;
	}
	if (j->run.status == WF_RUNNING || j->run.status == WF_COMPENSATING)
		wf_ready(j);
	else if (j->run.status == WF_COMPLETED || j->run.status == WF_CANCELLED)
		wf_job_free(j);
	else
		/* Loaded to be woken: decide once (it may rest again, giving up the lease). */
		wf_ready(j);
}

/* Where a committed job goes: on, a retry, parked, or away. */
static void
wf_job_after(struct wf_job *j, json_t *t)
{
	json_t *due = json_object_get(t, "due_ms");

	j->phase = WF_JOB_TIMER;
	switch (j->run.status) {
	case WF_RUNNING:
	case WF_COMPENSATING:
		if (json_integer_value(due) > 0 && TAILQ_EMPTY(&j->reqs) && !j->reload) {
			twheel_add(j->wf->w->wheel, &j->timer, worker_now_ms() +
			    (uint64_t)json_integer_value(due));
			return;
		}
		wf_job_idle(j);
		return;
	case WF_COMPLETED:
	case WF_CANCELLED:
		wf_job_drop_reqs(j, 404, "not_found", "the workflow has ended");
		wf_job_free(j);
		return;
	default:
		if (!TAILQ_EMPTY(&j->reqs) || j->reload)
			wf_job_idle(j);
		else
			wf_park(j);
	}
}

/* ---- manual actions and workflow requests -------------------------------------- */

static void
wf_req_answer(struct wf_req *q, int status, const char *code, const char *msg, json_t *doc)
{
	struct wf_answer a = { status, code, msg, doc };

	q->cb(&a, q->arg);
	free(q->reason);
	free(q->name);
	free(q->config);
	free(q);
}

static void
wf_on_released(struct pg_batch *b, void *arg)
{
	if (pg_batch_error(b) != NULL)
		log_debug("workflow lease not released; it runs out", "error=%s",
		    log_quote(pg_batch_error(b)));
}

/* After a refused request: go on if the run is due, else rest without a commit. */
static void
wf_job_settle(struct wf_job *j)
{
	struct pg_batch *b;

	if (!TAILQ_EMPTY(&j->reqs) || j->run.status == WF_RUNNING ||
	    j->run.status == WF_COMPENSATING || j->run.id[0] == '\0') {
		wf_job_idle(j);
		return;
	}
	b = pg_batch_new(wf_on_released, NULL);
	pg_batch_add(b, true, "wf_release", 2, (const char *[]){ j->run.id, j->wf->w->set->instance });
	if (pg_submit(j->wf->w->pg, b) != PG_OK)
		log_debug("workflow lease not released; it runs out", "workflow=%s", j->run.id);
	wf_park(j);
}

/* Run request q on job j (idle, its run loaded), or with no live run (j NULL). */
static void
wf_req_run(struct wf_job *j, struct wf_req *q)
{
	struct wf_step_env env;
	char allowed[256], msg[400];
	json_t *c;
	int m = q->action;

	if (j == NULL) {
		if (m >= 0) {
			wf_req_answer(q, 404, "not_found", "the order has no live workflow", NULL);
		} else {
			/* Nothing to replace: a plain start, answered as one. */
			q->force = false;
			wf_want_start(wf_of(worker_self()), q->order, q->creator, q);
		}
		return;
	}
	if (m < 0 && q->force && j->run.status == WF_COMPENSATING) {
		snprintf(msg, sizeof(msg), "workflow %s (%s) is compensating (undoing what it did); "
		    "send the request again once it has ended", j->run.def->name, j->run.id);
		wf_req_answer(q, 409, "workflow_running", msg, NULL);
		wf_job_settle(j);
		return;
	}
	if (m < 0 && !q->force) {
		snprintf(msg, sizeof(msg), "workflow %s (%s) is %s for the order; send "
		    "\"force_restart\": true to replace it", j->run.def->name, j->run.id,
		    wf_status_name(j->run.status));
		wf_req_answer(q, 409, "workflow_running", msg, NULL);
		wf_job_settle(j);
		return;
	}
	if (m >= 0 && q->if_match > 0 && q->if_match != j->run.version) {
		snprintf(msg, sizeof(msg), "the workflow is at version %d, not %lld; read it again",
		    j->run.version, q->if_match);
		wf_req_answer(q, 412, "version_mismatch", msg, NULL);
		wf_job_settle(j);
		return;
	}
	if (m < 0) {
		json_decref(j->run.restart);
		j->run.restart = json_pack("{s:s,s:o}", "name", q->name, "config",
		    q->config != NULL ? json_loads(q->config, 0, NULL) : json_null());
		m = WF_M_CANCEL;
	}
	wf_env(j->wf, &env);
	if ((c = wf_step_manual(&j->run, &env, m, q->actor, q->reason)) == NULL) {
		wf_step_allowed_json(wf_step_allowed(&j->run), allowed, sizeof(allowed));
		snprintf(msg, sizeof(msg), "a workflow that is %s%s%s cannot %s now; allowed actions: %s",
		    wf_status_name(j->run.status), j->run.wait[0] ? " for " : "", j->run.wait,
		    wf_manual_name(m), allowed);
		json_decref(j->run.restart);
		j->run.restart = NULL;
		wf_req_answer(q, 409, "action_not_allowed", msg, NULL);
		wf_job_settle(j);
		return;
	}
	util_count(&j->wf->fig.manual, 1);
	j->req = q;
	wf_queue(j, c);
}

/* Hand q to the live run of its order: in memory, or loaded for it. */
static void
wf_req_submit(struct wf *wf, struct wf_req *q)
{
	struct wf_job *j = smap_get(wf->jobs, q->order);
	struct wf_req_list *l;

	if (wf->closing) {
		wf_req_answer(q, 503, "shutting_down", "the server is shutting down", NULL);
		return;
	}
	if (j != NULL) {
		TAILQ_INSERT_TAIL(&j->reqs, q, entry);
		if (j->phase == WF_JOB_READY || (j->phase == WF_JOB_TIMER &&
		    twheel_pending(&j->timer))) {
			if (j->phase == WF_JOB_READY)
				wf_heap_remove(wf, j);
			twheel_cancel(&j->timer);
			j->phase = WF_JOB_TIMER;
			wf_job_idle(j);
		}
		return;
	}
	if ((l = smap_get(wf->waiting_reqs, q->order)) == NULL) {
		l = xmalloc(sizeof(*l));
		TAILQ_INIT(l);
		smap_put(wf->waiting_reqs, q->order, l);
		wf_want_load(wf, q->order, NULL);
	}
	TAILQ_INSERT_TAIL(l, q, entry);
}

static struct wf_req *
wf_req_new(const char *creator, const char *order, const char *tiktok_id, wf_answer_cb *cb,
    void *arg)
{
	struct wf_req *q = xcalloc(1, sizeof(*q));

	snprintf(q->creator, sizeof(q->creator), "%s", creator);
	snprintf(q->order, sizeof(q->order), "%s", order);
	snprintf(q->tiktok_id, sizeof(q->tiktok_id), "%s", tiktok_id);
	snprintf(q->actor, sizeof(q->actor), "user:%s", creator);
	q->cb = cb;
	q->arg = arg;
	return q;
}

void
wf_act(struct worker *w, const char *creator, const char *order, const char *tiktok_id,
    int action, long long if_match, const char *reason, wf_answer_cb *cb, void *arg)
{
	struct wf_req *q = wf_req_new(creator, order, tiktok_id, cb, arg);

	q->action = action;
	q->if_match = if_match;
	q->reason = reason != NULL ? xstrdup(reason) : NULL;
	wf_req_submit(wf_of(w), q);
}

void
wf_request(struct worker *w, const char *creator, const char *order, const char *tiktok_id,
    const char *name, const char *config, bool force, wf_answer_cb *cb, void *arg)
{
	struct wf_req *q = wf_req_new(creator, order, tiktok_id, cb, arg);

	q->action = -1;
	q->name = xstrdup(name);
	q->config = config != NULL ? xstrdup(config) : NULL;
	q->force = force;
	q->reason = xstrdup("force_restart");
	wf_req_submit(wf_of(w), q);
}

/* ---- events ----------------------------------------------------------------------- */

void
wf_order_changed(struct worker *w, const struct order_change *c)
{
	struct wf *wf = wf_of(w);
	struct wf_job *j;

	if (wf == NULL || wf->closing || c->kind == ORDER_CHANGE_WORKFLOW)
		return;
	if (c->kind == ORDER_CHANGE_CREATED) {
		/* Orders first seen shipped, delivered or cancelled get no workflow. */
		if (order_tiktok_before_shipping(c->tiktok_status))
			wf_want_load(wf, c->id, NULL);
		return;
	}
	if ((j = smap_get(wf->jobs, c->id)) != NULL) {
		/* Its facts are stale: read the run and the order again before going on. */
		if (j->phase == WF_JOB_QUEUED || j->phase == WF_JOB_SENT ||
		    j->phase == WF_JOB_CHOOSING || j->phase == WF_JOB_CALLING) {
			j->reload = true;
		} else {
			if (j->phase == WF_JOB_READY)
				wf_heap_remove(wf, j);
			twheel_cancel(&j->timer);
			j->phase = WF_JOB_TIMER;
			j->reload = true;
			wf_job_idle(j);
		}
		return;
	}
	log_debug("workflow event", "order=%s kind=%d parked=%d", c->id, (int)c->kind,
	    uset_has(wf->parked, c->id));
	if (uset_del(wf->parked, c->id)) {
		atomic_store_explicit(&wf->fig.parked, (long long)uset_count(wf->parked),
		    memory_order_relaxed);
		wf_want_load(wf, c->id, NULL);
	} else if (smap_get(wf->loading, c->id) != NULL) {
		((struct wf_pending_load *)smap_get(wf->loading, c->id))->dirty = true;
	}
	/* Not here: the change woke its row (retry_after), where the sweep finds it. */
}

/* A message that never ran: only its argument to free. */
static void
wf_drop_free(struct worker *w, void *arg)
{
	free(arg);
}

/* On the owner: a run the sweep claimed. */
static void
wf_on_claimed_one(struct worker *w, void *arg)
{
	struct wf *wf = wf_of(w);

	if (!wf->closing)
		wf_want_load(wf, NULL, arg);
	free(arg);
}

static void
wf_on_claimed(PGresult *r, const char *error, void *arg)
{
	struct wf *wf = arg;

	if (r == NULL || PQnfields(r) != 2)
		return;
	util_count(&wf->fig.claimed, (unsigned long long)PQntuples(r));
	for (int i = 0; i < PQntuples(r); i++) {
		struct worker *owner = ostore_owner(wf->w->set, PQgetvalue(r, i, 1));
		char *id = xstrdup(PQgetvalue(r, i, 0));

		if (owner == wf->w)
			wf_on_claimed_one(owner, id);
		else
			worker_post_owned(owner, wf_on_claimed_one, wf_drop_free, id);
	}
	if (PQntuples(r) > 0)
		log_debug("claimed due workflow runs", "count=%d", PQntuples(r));
}

/* How many more runs the workers may hold in memory. */
static int
wf_claim_room(void *arg)
{
	struct wf *wf = arg;
	long long per = (long long)WF_CLAIM_BATCHES * wf->w->cfg->workflow.max_batch;
	long long room = (per > WF_CLAIM_MIN ? per : WF_CLAIM_MIN) * wf->w->set->n -
	    wf_active(wf->w->set);

	return room > WF_CLAIM_MAX ? WF_CLAIM_MAX : (int)room;
}

static int64_t
wf_claim_interval(void *arg)
{
	return ((struct wf *)arg)->w->cfg->workflow.claim_interval;
}

static int64_t
wf_claim_lease(void *arg)
{
	return ((struct wf *)arg)->w->cfg->workflow.lease;
}

static void
wf_on_sweep_wake(struct worker *w, void *arg)
{
	struct wf *wf = wf_of(w);

	if (wf->sweep != NULL && !wf->closing)
		lease_sweep_wake(wf->sweep);
}

static void
wf_on_woken(struct pg_batch *b, void *arg)
{
	struct wf *wf = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) == NULL && r != NULL && PQntuples(r) == 1 &&
	    atoi(PQgetvalue(r, 0, 0)) > 0 && !wf->closing)
		worker_post(&wf->w->set->workers[0], wf_on_sweep_wake, NULL);
}

void
wf_stock_changed(struct worker *w, const char *creator)
{
	struct wf *wf = wf_of(w);
	char limit[16];
	struct pg_batch *b = pg_batch_new(wf_on_woken, wf);

	snprintf(limit, sizeof(limit), "%d", WF_WAKE_MAX);
	pg_batch_add(b, true, "wf_wake", 2, (const char *[]){ creator, limit });
	if (pg_submit(w->pg, b) != PG_OK)
		log_debug("stock wake not sent; the periodic check will do it", "creator=%s", creator);
}

static void
wf_on_stock_timer(struct twheel_timer *t)
{
	struct wf *wf = container_of(t, struct wf, stock_timer);
	char limit[16];
	struct pg_batch *b;

	if (wf->closing)
		return;
	snprintf(limit, sizeof(limit), "%d", WF_WAKE_MAX);
	b = pg_batch_new(wf_on_woken, wf);
	pg_batch_add(b, true, "wf_wake", 2, (const char *[]){ NULL, limit });
	if (pg_submit(wf->w->pg, b) != PG_OK)
		log_debug("stock check not sent: database unavailable", "%s", "");
	twheel_add(wf->w->wheel, &wf->stock_timer, worker_now_ms() +
	    (uint64_t)wf->w->cfg->workflow.stock_recheck);
}

static void
wf_on_forget(struct worker *w, void *arg)
{
	struct wf *wf = wf_of(w);
	struct wf_creator *c = smap_del(wf->creators, arg);

	if (c != NULL)
		wf_creator_free(c);
	free(arg);
}

void
wf_forget_creator(struct worker_set *s, const char *creator)
{
	for (int i = 0; i < s->n; i++)
		worker_post_owned(&s->workers[i], wf_on_forget, wf_drop_free, xstrdup(creator));
}

/* ---- the loop turn ---------------------------------------------------------------- */

static void
wf_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct wf *wf = arg;

	if (wf->closing)
		return;
	wf_flush_loads(wf);
	wf_flush_choosing(wf);
	wf_flush_begins(wf);
	wf_pump(wf);
	wf_writer(wf);
}

static void
wf_kick(struct wf *wf)
{
	if (!wf->closing)
		event_active(wf->kick, 0, 0);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

void *
wf_new(struct worker *w)
{
	struct wf *wf = xcalloc(1, sizeof(*wf));
	const struct config *cfg = w->cfg;
	struct breaker_config bc = { (int)cfg->inventory.breaker_threshold,
	    cfg->inventory.breaker_window, cfg->inventory.breaker_reset };

	wf->w = w;
	wf->jobs = smap_new();
	wf->parked = uset_new();
	wf->waiting_reqs = smap_new();
	wf->loading = smap_new();
	wf->creators = smap_new();
	wf->defs = smap_new();
	wf->load_wf = json_array();
	wf->load_order = json_array();
	TAILQ_INIT(&wf->queue);
	twheel_timer_init(&wf->writer_timer, wf_on_writer_timer);
	twheel_timer_init(&wf->stock_timer, wf_on_stock_timer);
	wf->kick = event_new(w->base, -1, 0, wf_on_kick, wf);
	breaker_init(&wf->inventory, "inventory", &bc, w->wheel);
	order_machine_json(wf->machine, sizeof(wf->machine));
	snprintf(wf->fig.labels[WF_LABELS_MAX].workflow, sizeof(wf->fig.labels[0].workflow), "other");
	snprintf(wf->fig.labels[WF_LABELS_MAX].step, sizeof(wf->fig.labels[0].step), "other");
	if (w->id == 0) {
		struct lease_queue q = {
			.name = "order_workflows", .claim = "wf_claim", .owners = "wf_owners",
			.release_owner = "wf_release_owner", .max_claim = WF_CLAIM_MAX,
			.claimed = wf_on_claimed, .room = wf_claim_room,
			.interval = wf_claim_interval, .lease = wf_claim_lease,
		};

		wf->sweep = lease_sweep_new(w, &q, wf);
	}
	return wf;
}

void
wf_start(struct worker *w)
{
	struct wf *wf = wf_of(w);

	if (wf->sweep == NULL)
		return;
	lease_sweep_start(wf->sweep, WF_FIRST_CLAIM_MS);
	twheel_add(w->wheel, &wf->stock_timer, worker_now_ms() +
	    (uint64_t)w->cfg->workflow.stock_recheck);
}

void
wf_reconfigure(struct worker *w, const struct config *cfg)
{
	/* Every decision reads the worker's config: nothing to copy. */
	(void)w;
	(void)cfg;
}

/* Everything but the jobs whose commit is in flight (the pool calls them back). */
void
wf_close(struct worker *w)
{
	struct wf *wf = wf_of(w);
	const char *k;
	void *v;
	size_t pos = 0;
	struct wf_job **all;
	size_t n = 0;

	if (wf->closing)
		return;
	wf->closing = true;
	event_del(wf->kick);
	twheel_cancel(&wf->writer_timer);
	twheel_cancel(&wf->stock_timer);
	breaker_stop(&wf->inventory);
	if (wf->sweep != NULL)
		lease_sweep_close(wf->sweep);
	/* CHOOSING jobs are freed with the others below. */
	wf->nchoosing = 0;
	all = xcalloc(smap_count(wf->jobs) + 1, sizeof(*all));
	while (smap_next(wf->jobs, &pos, &k, &v))
		if (((struct wf_job *)v)->phase != WF_JOB_SENT)
			all[n++] = v;
	for (size_t i = 0; i < n; i++)
		wf_job_free(all[i]);
	free(all);
	wf_reqs_unloaded(wf->waiting_reqs, "the server is shutting down");
	wf->waiting_reqs = smap_new();
	for (int i = 0; i < wf->nbegins; i++)
		if (wf->begins[i].req != NULL)
			wf_req_answer(wf->begins[i].req, 503, "shutting_down",
			    "the server is shutting down", NULL);
	wf->nbegins = 0;
}

void
wf_free(struct worker *w)
{
	struct wf *wf = wf_of(w);
	const char *k;
	void *v;
	size_t pos = 0;

	if (wf == NULL)
		return;
	wf_close(w);
	while (smap_next(wf->jobs, &pos, &k, &v)) {
		struct wf_job *j = v;

		json_decref(j->item);
		wf_step_clear(&j->run);
		free(j);
	}
	smap_free(wf->jobs, NULL);
	uset_free(wf->parked);
	smap_free(wf->waiting_reqs, free);
	smap_free(wf->loading, free);
	smap_free(wf->creators, wf_creator_free);
	smap_free(wf->defs, (void (*)(void *))wf_def_unref);
	json_decref(wf->load_wf);
	json_decref(wf->load_order);
	lease_sweep_free(wf->sweep);
	event_free(wf->kick);
	free(wf->heap);
	free(wf->sent);
	free(wf->begins);
	free(wf->choosing);
	free(wf);
}

/* ---- figures ---------------------------------------------------------------------- */

/* A gauge of struct wf_figures (an atomic_llong at off) over all workers. */
static long long
wf_gauge(struct worker_set *s, size_t off)
{
	long long n = 0;

	for (int i = 0; i < s->n; i++)
		n += atomic_load((atomic_llong *)((char *)&((struct wf *)
		    s->workers[i].svc[SERVICE_WF])->fig + off));
	return n;
}

long long
wf_parked(struct worker_set *s)
{
	return wf_gauge(s, offsetof(struct wf_figures, parked));
}

long long
wf_active(struct worker_set *s)
{
	return wf_gauge(s, offsetof(struct wf_figures, active));
}

static unsigned long long
wf_sum(struct worker_set *s, size_t off)
{
	unsigned long long v = 0;

	for (int i = 0; i < s->n; i++)
		v += atomic_load((atomic_ullong *)(void *)((char *)&((struct wf *)
		    s->workers[i].svc[SERVICE_WF])->fig + off));
	return v;
}

static void
wf_metrics_counters(struct evbuffer *out, struct worker_set *s)
{
	static const struct { const char *name, *help; size_t off; } c[] = {
#define WF_C(n, f, h) { "orderflow_workflow_" n "_total", h, offsetof(struct wf_figures, f) }
		WF_C("started", started, "Workflow runs started."),
		WF_C("completed", completed, "Workflow runs that completed."),
		WF_C("failed", failed, "Workflow runs that ended failed."),
		WF_C("cancelled", cancelled, "Workflow runs cancelled (compensated)."),
		WF_C("compensations", compensations, "Compensations run (stock released...)."),
		WF_C("retries", retries, "Workflow steps scheduled again after a failure."),
		WF_C("reservations", reserved, "Orders whose stock was reserved."),
		WF_C("backorders", backorders, "Reservations that found too little stock (the run waits)."),
		WF_C("untracked", untracked, "Reservations refused for a SKU without inventory row."),
		WF_C("stale_commits", stale, "Commits dropped because the run moved meanwhile."),
		WF_C("commits", commits, "Commit rounds (transactions) of the engine."),
		WF_C("commit_items", commit_items, "Transitions committed, over all rounds."),
		WF_C("commit_errors", commit_errors, "Commit rounds the database refused."),
		WF_C("manual_actions", manual, "Manual actions taken."),
		WF_C("claimed", claimed, "Due runs claimed by the sweep."),
#undef WF_C
	};

	for (size_t k = 0; k < NELEM(c); k++)
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", c[k].name,
		    c[k].help, c[k].name, c[k].name, wf_sum(s, c[k].off));
	evbuffer_add_printf(out, "# HELP orderflow_workflow_waits_total Runs that parked, by what "
	    "they wait for.\n# TYPE orderflow_workflow_waits_total counter\n");
	for (int k = 0; wf_wait_kinds[k] != NULL; k++)
		evbuffer_add_printf(out, "orderflow_workflow_waits_total{kind=\"%s\"} %llu\n",
		    wf_wait_kinds[k], wf_sum(s, offsetof(struct wf_figures, waits) +
		    (size_t)k * sizeof(atomic_ullong)));
	evbuffer_add_printf(out, "# HELP orderflow_workflow_parked Parked runs per worker.\n"
	    "# TYPE orderflow_workflow_parked gauge\n");
	for (int i = 0; i < s->n; i++)
		evbuffer_add_printf(out, "orderflow_workflow_parked{worker=\"%d\"} %lld\n", i,
		    (long long)atomic_load(&((struct wf *)s->workers[i].svc[SERVICE_WF])->fig.parked));
	evbuffer_add_printf(out, "# HELP orderflow_workflow_active Runs in memory per worker.\n"
	    "# TYPE orderflow_workflow_active gauge\n");
	for (int i = 0; i < s->n; i++)
		evbuffer_add_printf(out, "orderflow_workflow_active{worker=\"%d\"} %lld\n", i,
		    (long long)atomic_load(&((struct wf *)s->workers[i].svc[SERVICE_WF])->fig.active));
}

/* Decision-to-commit latency per action ("transition": steps without an action). */
static void
wf_metrics_latency(struct evbuffer *out, struct worker_set *s)
{
	const char *name = "orderflow_workflow_step_duration_seconds";

	evbuffer_add_printf(out, "# HELP %s Time from a step's decision to its commit.\n"
	    "# TYPE %s histogram\n", name, name);
	for (int a = 0; a <= WF_A_COUNT; a++) {
		const char *an = a < WF_A_COUNT ? wf_action_info(a)->name : "transition";
		unsigned long long cum = 0, sum = 0, count = 0;

		for (int b = 0; b <= METRICS_BUCKETS; b++) {
			for (int i = 0; i < s->n; i++)
				cum += atomic_load(&((struct wf *)s->workers[i].svc[SERVICE_WF])->
				    fig.latency[a].bucket[b]);
			if (b < METRICS_BUCKETS)
				evbuffer_add_printf(out, "%s_bucket{action=\"%s\",le=\"%g\"} %llu\n", name,
				    an, (double)metrics_bucket_us[b] / 1e6, cum);
			else
				evbuffer_add_printf(out, "%s_bucket{action=\"%s\",le=\"+Inf\"} %llu\n",
				    name, an, cum);
		}
		for (int i = 0; i < s->n; i++) {
			struct wf_figures *f = &((struct wf *)s->workers[i].svc[SERVICE_WF])->fig;

			sum += atomic_load(&f->latency[a].sum_us);
			count += atomic_load(&f->latency[a].count);
		}
		evbuffer_add_printf(out, "%s_sum{action=\"%s\"} %.6f\n%s_count{action=\"%s\"} %llu\n",
		    name, an, (double)sum / 1e6, name, an, count);
	}
}

/* By workflow and step: entered, waiting, failed (summed over the workers). */
static void
wf_metrics_steps(struct evbuffer *out, struct worker_set *s)
{
	static const char *const what[] = { "entered", "waiting", "failed" };

	evbuffer_add_printf(out, "# HELP orderflow_workflow_steps_total Steps entered, parked at "
	    "and failed at, by workflow and step.\n# TYPE orderflow_workflow_steps_total counter\n");
	for (int i = 0; i < s->n; i++) {
		struct wf_figures *f = &((struct wf *)s->workers[i].svc[SERVICE_WF])->fig;
		int n = atomic_load_explicit(&f->nlabels, memory_order_acquire);

		for (int k = 0; k <= n && k <= WF_LABELS_MAX; k++) {
			struct wf_label *l = &f->labels[k == n ? WF_LABELS_MAX : k];
			atomic_ullong *v[3] = { &l->entered, &l->waiting, &l->failed };

			if (l->workflow[0] == '\0')
				continue;
			for (int x = 0; x < 3; x++)
				evbuffer_add_printf(out, "orderflow_workflow_steps_total{worker=\"%d\","
				    "workflow=\"%s\",step=\"%s\",what=\"%s\"} %llu\n", i, l->workflow,
				    l->step, what[x], (unsigned long long)atomic_load(v[x]));
		}
	}
}

void
wf_metrics(struct evbuffer *out, struct worker_set *s)
{
	wf_metrics_counters(out, s);
	wf_metrics_latency(out, s);
	wf_metrics_steps(out, s);
}
