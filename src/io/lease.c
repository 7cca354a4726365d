/*
 * lease: the claim sweep of a leased table, and dead owners' leases.
 *
 * The sweep is one timer and at most one statement in flight: reaping
 * (once, before the first claim), or a claim.  Reaping asks which owners
 * of this host hold rows, frees those whose process is gone, and queues
 * the first claim behind those releases on the same pool, so it sees them.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderflow/lease.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

/* Before the reaping can run again after a failure. */
#define LEASE_RETRY_MS 500

struct lease_sweep {
	struct worker	*w;
	struct lease_queue q;
	void		*arg;
	struct twheel_timer timer;
	int		limit;		/* rows the claim in flight asked for */
	bool		busy;		/* a statement is out */
	bool		reaped;		/* dead owners' leases were freed */
	bool		closing;
	unsigned long long claimed;
};

static void lease_sweep_run(struct lease_sweep *s);

static void
lease_again(struct lease_sweep *s, int64_t ms)
{
	if (!s->closing)
		twheel_add(s->w->wheel, &s->timer, worker_now_ms() + (uint64_t)(ms > 0 ? ms : 0));
}

static void
lease_on_timer(struct twheel_timer *t)
{
	lease_sweep_run(container_of(t, struct lease_sweep, timer));
}

bool
lease_owner_dead(const char *owner, const char *self)
{
	const char *colon = strchr(self, ':'), *pid;
	size_t host = colon != NULL ? (size_t)(colon - self) + 1 : 0;
	char *end;
	long v;

	if (host == 0 || strncmp(owner, self, host) != 0)
		return false;
	pid = owner + host;
	v = strtol(pid, &end, 10);
	if (end == pid || *end != ':' || v <= 0 || v == (long)getpid())
		return false;
	return kill((pid_t)v, 0) == -1 && errno == ESRCH;
}

static void
lease_on_release(struct pg_batch *b, void *arg)
{
	struct lease_sweep *s = arg;

	if (pg_batch_error(b) != NULL)
		log_warn("freeing dead leases failed", "table=%s error=%s", s->q.name,
		    log_quote(pg_batch_error(b)));
}

static void
lease_on_owners(struct pg_batch *b, void *arg)
{
	struct lease_sweep *s = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *self = s->w->set->instance;

	s->busy = false;
	if (pg_batch_error(b) != NULL || r == NULL || PQnfields(r) != 1) {
		lease_again(s, LEASE_RETRY_MS);
		return;
	}
	s->reaped = true;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *owner = PQgetvalue(r, i, 0);
		struct pg_batch *rb;

		if (!lease_owner_dead(owner, self))
			continue;
		log_info("freeing the leases of a dead process", "table=%s owner=%s", s->q.name,
		    log_quote(owner));
		rb = pg_batch_new(lease_on_release, s);
		pg_batch_add(rb, true, s->q.release_owner, 1, (const char *[]){ owner });
		if (pg_submit(s->w->pg, rb) != PG_OK)
			log_warn("freeing dead leases not sent: database unavailable", "table=%s",
			    s->q.name);
	}
	/* Behind the releases on the same pool, so it sees them. */
	lease_again(s, 0);
}

static void
lease_reap(struct lease_sweep *s)
{
	const char *inst = s->w->set->instance, *colon = strchr(inst, ':');
	char like[160];
	struct pg_batch *b;

	snprintf(like, sizeof(like), "%.*s:%%", (int)(colon - inst), inst);
	b = pg_batch_new(lease_on_owners, s);
	pg_batch_add(b, true, s->q.owners, 1, (const char *[]){ like });
	if (pg_submit(s->w->pg, b) == PG_OK)
		s->busy = true;
	else
		lease_again(s, LEASE_RETRY_MS);
}

static void
lease_on_claim(struct pg_batch *b, void *arg)
{
	struct lease_sweep *s = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *error = pg_batch_error(b);
	int n;

	s->busy = false;
	if (error != NULL || r == NULL) {
		log_debug("claim sweep failed", "table=%s error=%s", s->q.name,
		    log_quote(error != NULL ? error : "no result"));
		s->q.claimed(NULL, error != NULL ? error : "no result", s->arg);
		lease_again(s, s->q.interval(s->arg));
		return;
	}
	n = PQntuples(r);
	s->claimed += (unsigned long long)n;
	s->q.claimed(r, NULL, s->arg);
	/* A full page means more are waiting: sweep again at once. */
	lease_again(s, n == s->limit ? 0 : s->q.interval(s->arg));
}

static void
lease_claim(struct lease_sweep *s)
{
	int room = s->q.room(s->arg);
	char lease[24], limit[24];
	struct pg_batch *b;

	if (room <= 0) {
		lease_again(s, s->q.interval(s->arg));
		return;
	}
	s->limit = room < s->q.max_claim ? room : s->q.max_claim;
	snprintf(lease, sizeof(lease), "%lld", (long long)s->q.lease(s->arg));
	snprintf(limit, sizeof(limit), "%d", s->limit);
	b = pg_batch_new(lease_on_claim, s);
	pg_batch_add(b, true, s->q.claim, 3, (const char *[]){ s->w->set->instance, lease, limit });
	if (pg_submit(s->w->pg, b) == PG_OK)
		s->busy = true;
	else
		lease_again(s, s->q.interval(s->arg));
}

static void
lease_sweep_run(struct lease_sweep *s)
{
	if (s->busy || s->closing)
		return;
	if (!s->reaped)
		lease_reap(s);
	else
		lease_claim(s);
}

struct lease_sweep *
lease_sweep_new(struct worker *w, const struct lease_queue *q, void *arg)
{
	struct lease_sweep *s = xcalloc(1, sizeof(*s));

	s->w = w;
	s->q = *q;
	s->arg = arg;
	twheel_timer_init(&s->timer, lease_on_timer);
	return s;
}

void
lease_sweep_start(struct lease_sweep *s, int64_t first_ms)
{
	lease_again(s, first_ms);
}

void
lease_sweep_wake(struct lease_sweep *s)
{
	if (!s->busy)
		lease_again(s, 0);
}

void
lease_sweep_close(struct lease_sweep *s)
{
	s->closing = true;
	twheel_cancel(&s->timer);
}

void
lease_sweep_free(struct lease_sweep *s)
{
	if (s == NULL)
		return;
	lease_sweep_close(s);
	free(s);
}

unsigned long long
lease_sweep_claimed(const struct lease_sweep *s)
{
	return s->claimed;
}
