/*
 * Unit tests for twheel: order across levels, cancel, re-add, cascading at
 * every level boundary and past the top span, timers added from callbacks,
 * big jumps, a randomized comparison with a sorted reference model, and a
 * million timers.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/twheel.h"
#include "orderflow/util.h"

/* A test timer: the id says which one fired. */
struct tt {
	struct twheel_timer	timer;	/* embedded, as owners do */
	int			id;	/* index in the test's array */
};

/* What the callbacks saw, shared by the simple tests. */
struct trace {
	int		ids[4096];	/* ids in firing order */
	uint64_t	expires[4096];	/* their expiries */
	int		n;		/* how many fired */
};

static struct trace trace;
static struct twheel *cur_wheel;	/* the wheel the callbacks act on */
static uint64_t cur_now;		/* now_ms of the run in progress */

static uint64_t rng_state;

static uint64_t
rnd64(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

/* Uniform-ish in [0, n). */
static uint64_t
rnd_below(uint64_t n)
{
	return n == 0 ? 0 : rnd64() % n;
}

static void
record_cb(struct twheel_timer *t)
{
	struct tt *x = container_of(t, struct tt, timer);

	assert_false(twheel_pending(t));
	assert_true(trace.n < (int)NELEM(trace.ids));
	trace.ids[trace.n] = x->id;
	trace.expires[trace.n] = t->expire;
	trace.n++;
}

static void
trace_reset(void)
{
	memset(&trace, 0, sizeof(trace));
}

static size_t
run(struct twheel *w, uint64_t now)
{
	cur_wheel = w;
	cur_now = now;
	return twheel_run(w, now);
}

static void
init_all(struct tt *a, int n, twheel_cb *cb)
{
	for (int i = 0; i < n; i++) {
		twheel_timer_init(&a[i].timer, cb);
		a[i].id = i;
	}
}

/* Timers spread over every level fire in expiry order, ties in add order. */
static void
test_order_levels(void **state)
{
	static const uint64_t at[] = { 5000000, 3, 70, 3, 100000, 63, 64, 1 << 20, 70,
	    (uint64_t)1 << 37, 0, 4096, 4095, 262144, 3 };
	static const int want[] = { 10, 1, 3, 14, 5, 6, 2, 8, 12, 11, 4, 13, 7, 0, 9 };
	struct tt a[NELEM(at)];
	struct twheel *w = twheel_new(0);

	trace_reset();
	init_all(a, NELEM(at), record_cb);
	for (size_t i = 0; i < NELEM(at); i++)
		twheel_add(w, &a[i].timer, at[i]);
	assert_int_equal(twheel_count(w), NELEM(at));
	assert_int_equal(run(w, UINT64_MAX), NELEM(at));
	assert_int_equal(trace.n, NELEM(at));
	for (size_t i = 0; i < NELEM(at); i++)
		assert_int_equal(trace.ids[i], want[i]);
	assert_int_equal(twheel_count(w), 0);
	assert_int_equal(twheel_next_expiry(w), UINT64_MAX);
	twheel_free(w);
}

/* Timers a callback cancels, set by the test. */
static struct tt *victims[4];

static void
cancel_cb(struct twheel_timer *t)
{
	record_cb(t);
	for (size_t i = 0; i < NELEM(victims); i++)
		if (victims[i] != NULL)
			twheel_cancel(&victims[i]->timer);
}

static void
test_cancel(void **state)
{
	struct tt a[6];
	struct twheel *w = twheel_new(1000);

	trace_reset();
	init_all(a, 6, record_cb);
	a[0].timer.cb = cancel_cb;

	/* Never added, then cancelled twice: no-ops. */
	twheel_cancel(&a[5].timer);
	assert_false(twheel_pending(&a[5].timer));

	/* Cancel before expiry, on several levels. */
	twheel_add(w, &a[1].timer, 1010);
	twheel_add(w, &a[2].timer, 1000 + 100000);
	assert_true(twheel_pending(&a[1].timer));
	twheel_cancel(&a[1].timer);
	twheel_cancel(&a[1].timer);
	twheel_cancel(&a[2].timer);
	assert_false(twheel_pending(&a[1].timer));
	assert_int_equal(twheel_count(w), 0);
	assert_int_equal(twheel_next_expiry(w), UINT64_MAX);
	assert_int_equal(run(w, 1000 + 200000), 0);

	/*
	 * From a callback: a[0] cancels a[3] (same time, added after it, so
	 * already taken for firing) and a[4] (due later in the same run).
	 */
	twheel_add(w, &a[0].timer, 201500);
	twheel_add(w, &a[3].timer, 201500);
	twheel_add(w, &a[4].timer, 201600);
	victims[0] = &a[3];
	victims[1] = &a[4];
	assert_int_equal(run(w, 202000), 1);
	victims[0] = victims[1] = NULL;
	assert_int_equal(trace.n, 1);
	assert_int_equal(trace.ids[0], 0);
	assert_int_equal(twheel_count(w), 0);

	/* Cancel of a timer that already fired: a no-op. */
	twheel_cancel(&a[0].timer);
	assert_int_equal(twheel_count(w), 0);
	assert_int_equal(run(w, 300000), 0);
	twheel_free(w);
}

static void
test_readd(void **state)
{
	struct tt a[3];
	struct twheel *w = twheel_new(0);

	trace_reset();
	init_all(a, 3, record_cb);
	twheel_add(w, &a[0].timer, 500);
	twheel_add(w, &a[1].timer, 500);
	twheel_add(w, &a[2].timer, 100000);
	/* Later, earlier, and to the same time (goes behind a[1]). */
	twheel_add(w, &a[2].timer, 10);
	twheel_add(w, &a[0].timer, 500);
	assert_int_equal(twheel_count(w), 3);
	assert_int_equal(twheel_next_expiry(w), 10);
	assert_int_equal(run(w, 499), 1);
	assert_int_equal(trace.ids[0], 2);
	twheel_add(w, &a[1].timer, 7000);
	assert_int_equal(run(w, 500), 1);
	assert_int_equal(trace.ids[1], 0);
	assert_int_equal(run(w, 6999), 0);
	assert_int_equal(run(w, 7000), 1);
	assert_int_equal(trace.ids[2], 1);
	/* Re-adding a fired timer arms it again. */
	twheel_add(w, &a[1].timer, 7001);
	assert_int_equal(run(w, 8000), 1);
	assert_int_equal(twheel_count(w), 0);
	twheel_free(w);
}

/*
 * Each expiry around every level boundary, relative to several start
 * times (placement depends on alignment): nothing fires one ms early,
 * the timer fires exactly at its time, alone and with the others.
 */
static void
test_cascade_boundaries(void **state)
{
	static const uint64_t starts[] = { 0, 1, 12345, ((uint64_t)1 << 36) - 3,
	    ((uint64_t)1 << 42) + 777 };
	uint64_t offs[64];
	size_t noffs = 0;
	struct tt *a = xcalloc(64, sizeof(*a));

	for (unsigned k = 1; k <= 7; k++) {
		uint64_t b = (uint64_t)1 << (6 * k);

		offs[noffs++] = b - 1;
		offs[noffs++] = b;
		offs[noffs++] = b + 1;
	}
	offs[noffs++] = (uint64_t)1 << 50;
	offs[noffs++] = 0;

	for (size_t s = 0; s < NELEM(starts); s++) {
		uint64_t start = starts[s];

		/* One at a time: fires exactly at its expiry, after stepwise runs. */
		for (size_t i = 0; i < noffs; i++) {
			struct twheel *w = twheel_new(start);
			uint64_t e = start + offs[i];

			trace_reset();
			init_all(a, 1, record_cb);
			twheel_add(w, &a[0].timer, e);
			assert_true(twheel_next_expiry(w) <= e);
			/* Walk there by halving jumps, then one ms before. */
			for (uint64_t now = start; e > 0 && now < e - 1;) {
				now += (e - 1 - now + 1) / 2;
				assert_int_equal(run(w, now), 0);
				assert_true(twheel_next_expiry(w) <= e);
				assert_true(twheel_next_expiry(w) > now);
			}
			if (e > start)
				assert_int_equal(run(w, e - 1), 0);
			assert_int_equal(twheel_next_expiry(w), e);
			assert_int_equal(run(w, e), 1);
			assert_int_equal(trace.expires[0], e);
			twheel_free(w);
		}

		/* All together, one big run. */
		{
			struct twheel *w = twheel_new(start);

			trace_reset();
			init_all(a, (int)noffs, record_cb);
			for (size_t i = noffs; i-- > 0;)
				twheel_add(w, &a[i].timer, start + offs[i]);
			assert_int_equal(run(w, start + ((uint64_t)1 << 51)), noffs);
			for (int i = 1; i < trace.n; i++)
				assert_true(trace.expires[i - 1] <= trace.expires[i]);
			twheel_free(w);
		}
	}
	free(a);
}

/* Callback of a timer that re-adds timers for "now" and a bit later. */
static struct tt *now_a, *now_b, *now_c;

static void
now_cb(struct twheel_timer *t)
{
	record_cb(t);
	if (t == &now_a->timer) {
		twheel_add(cur_wheel, &now_b->timer, t->expire);	/* this ms: next run */
		twheel_add(cur_wheel, &now_c->timer, t->expire + 1);	/* later: this run */
	}
}

/* Re-adds itself for the time it fired at: once per run, never a loop. */
static void
self_cb(struct twheel_timer *t)
{
	record_cb(t);
	twheel_add(cur_wheel, t, t->expire);
}

static void
test_add_from_callback(void **state)
{
	struct tt a[4];
	struct twheel *w = twheel_new(100);

	trace_reset();
	init_all(a, 4, now_cb);
	now_a = &a[0];
	now_b = &a[1];
	now_c = &a[2];
	twheel_add(w, &a[0].timer, 150);
	assert_int_equal(run(w, 200), 2);
	assert_int_equal(trace.ids[0], 0);
	assert_int_equal(trace.ids[1], 2);
	assert_true(twheel_pending(&a[1].timer));
	/* Overdue now: next_expiry is in the past, and any run fires it. */
	assert_true(twheel_next_expiry(w) <= 150);
	assert_int_equal(run(w, 200), 1);
	assert_int_equal(trace.ids[2], 1);
	assert_int_equal(twheel_count(w), 0);

	/* Self re-add for "now": one firing per run, however many runs. */
	a[3].timer.cb = self_cb;
	twheel_add(w, &a[3].timer, 300);
	for (int i = 0; i < 5; i++)
		assert_int_equal(run(w, 300 + (uint64_t)i), 1);
	assert_int_equal(twheel_count(w), 1);
	twheel_cancel(&a[3].timer);
	assert_int_equal(run(w, 400), 0);

	/* A past expiry added outside a run fires on the next run, even an earlier now. */
	trace_reset();
	a[3].timer.cb = record_cb;
	twheel_add(w, &a[3].timer, 5);
	assert_int_equal(twheel_next_expiry(w), 5);
	assert_int_equal(run(w, 10), 1);
	twheel_free(w);
}

static void
nested_cb(struct twheel_timer *t)
{
	record_cb(t);
	assert_int_equal(twheel_run(cur_wheel, cur_now + 1000), 0);
}

static void
test_nested_run(void **state)
{
	struct tt a[2];
	struct twheel *w = twheel_new(0);

	trace_reset();
	init_all(a, 2, nested_cb);
	twheel_add(w, &a[0].timer, 10);
	twheel_add(w, &a[1].timer, 20);
	assert_int_equal(run(w, 15), 1);
	assert_int_equal(run(w, 20), 1);
	twheel_free(w);
}

/* Huge jumps with sparse timers: each fires in the first run that reaches it. */
static void
test_big_jumps(void **state)
{
	enum { N = 2000 };
	struct tt *a = xcalloc(N, sizeof(*a));
	struct twheel *w = twheel_new(7);
	uint64_t prev = 7, now = 7;
	bool *fired = xcalloc(N, sizeof(*fired));

	rng_state = 0x9e3779b97f4a7c15ULL;
	trace_reset();
	init_all(a, N, record_cb);
	for (int i = 0; i < N; i++)
		twheel_add(w, &a[i].timer, 7 + rnd_below((uint64_t)1 << (rnd_below(40) + 1)));
	while (twheel_count(w) > 0) {
		prev = now;
		now += rnd_below((uint64_t)1 << rnd_below(40));
		trace.n = 0;
		run(w, now);
		for (int i = 0; i < trace.n; i++) {
			assert_true(trace.expires[i] > prev || prev == 7);
			assert_true(trace.expires[i] <= now);
			if (i > 0)
				assert_true(trace.expires[i - 1] <= trace.expires[i]);
			assert_false(fired[trace.ids[i]]);
			fired[trace.ids[i]] = true;
		}
		if (twheel_count(w) > 0) {
			uint64_t next = twheel_next_expiry(w);

			assert_true(next > now);
		}
	}
	for (int i = 0; i < N; i++)
		assert_true(fired[i]);
	free(fired);
	free(a);
	twheel_free(w);
}

static void
test_free_pending(void **state)
{
	struct tt a[3];
	struct twheel *w = twheel_new(0);

	init_all(a, 3, record_cb);
	twheel_add(w, &a[0].timer, 1);
	twheel_add(w, &a[1].timer, (uint64_t)1 << 40);
	run(w, 5);
	twheel_add(w, &a[2].timer, 2);		/* overdue */
	twheel_add(w, &a[0].timer, 100);
	twheel_free(w);
	for (int i = 0; i < 3; i++)
		assert_false(twheel_pending(&a[i].timer));
	twheel_cancel(&a[0].timer);
}

/*
 * Randomized comparison with a reference model: the same adds, cancels and
 * runs (with callbacks that add and cancel too) go to the wheel and to a
 * plain array searched for the smallest (effective expiry, add sequence).
 * The reference encodes the documented semantics: an expiry behind the
 * wheel counts as the wheel's time and fires first in the next run; one
 * added from a callback at or before the time being fired waits for the
 * next run.
 */
enum { RN = 400 };

struct ref_ent {
	bool		pending;	/* armed */
	bool		deferred;	/* added during a run for the past: next run */
	uint64_t	eff;		/* effective expiry */
	uint64_t	seq;		/* add order */
};

struct model {
	struct ref_ent	ref[RN];	/* the reference */
	uint64_t	seq;		/* last add sequence */
	uint64_t	cursor;		/* next ms not yet fired (the wheel's w->now) */
	uint64_t	run_now;	/* now of the run in progress */
	bool		in_run;
	int		log[1 << 16];	/* ids fired in the current run */
	int		nlog;
	uint64_t	nfired;		/* fires so far, drives the callbacks' choices */
	struct twheel	*w;		/* the wheel under test */
	struct tt	t[RN];		/* its timers, one per reference entry */
};

static struct model *M;
static bool fire_wheel;			/* which side the callback acts on */
static uint64_t ref_cursor_in_run;	/* reference: the cursor while firing */

static void
ref_add(struct model *m, int id, uint64_t e)
{
	struct ref_ent *r = &m->ref[id];

	r->pending = true;
	r->seq = ++m->seq;
	r->deferred = false;
	if (e < (m->in_run ? ref_cursor_in_run : m->cursor)) {
		if (m->in_run)
			r->deferred = true;
		r->eff = m->cursor - 1;		/* overdue: fixed again at run end */
	} else
		r->eff = e;
}

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* What a callback does, decided by the fire count and id only. */
static void
model_callback_action(struct model *m, int id)
{
	uint64_t h = mix(m->nfired * 1000003 + (uint64_t)id);
	int other = (int)((h >> 8) % RN);
	int64_t delta = (int64_t)((h >> 20) % 400) - 100;
	uint64_t e = (int64_t)m->run_now + delta < 0 ? 0 : (uint64_t)((int64_t)m->run_now + delta);

	m->nfired++;
	switch (h % 8) {
	case 0:		/* add or move another timer */
		if (fire_wheel)
			twheel_add(m->w, &m->t[other].timer, e);
		else
			ref_add(m, other, e);
		break;
	case 1:		/* cancel another timer */
		if (fire_wheel)
			twheel_cancel(&m->t[other].timer);
		else
			m->ref[other].pending = false;
		break;
	case 2:		/* re-add itself */
		if (fire_wheel)
			twheel_add(m->w, &m->t[id].timer, e);
		else
			ref_add(m, id, e);
		break;
	default:
		break;
	}
}

static void
model_cb(struct twheel_timer *t)
{
	struct tt *x = container_of(t, struct tt, timer);

	assert_true(M->nlog < (int)NELEM(M->log));
	M->log[M->nlog++] = x->id;
	model_callback_action(M, x->id);
}

/* The reference run; returns how many fired and logs them. */
static size_t
ref_run(struct model *m, uint64_t now)
{
	uint64_t start = m->cursor;
	size_t n = 0;

	if (now == UINT64_MAX)
		now = UINT64_MAX - 1;
	m->in_run = true;
	m->run_now = now;
	ref_cursor_in_run = m->cursor;
	for (;;) {
		int best = -1;

		for (int i = 0; i < RN; i++) {
			struct ref_ent *r = &m->ref[i];

			if (!r->pending || r->deferred || (r->eff > now && r->eff >= start))
				continue;
			if (best < 0 || r->eff < m->ref[best].eff ||
			    (r->eff == m->ref[best].eff && r->seq < m->ref[best].seq))
				best = i;
		}
		if (best < 0)
			break;
		if (m->ref[best].eff + 1 > ref_cursor_in_run)
			ref_cursor_in_run = m->ref[best].eff + 1;
		m->ref[best].pending = false;
		assert_true(m->nlog < (int)NELEM(m->log));
		m->log[m->nlog++] = best;
		n++;
		model_callback_action(m, best);
	}
	if (now + 1 > m->cursor)
		m->cursor = now + 1;
	m->in_run = false;
	for (int i = 0; i < RN; i++)
		if (m->ref[i].deferred) {
			m->ref[i].deferred = false;
			m->ref[i].eff = m->cursor - 1;
		}
	return n;
}

/* A random expiry relative to now, over every level and past the span. */
static uint64_t
rnd_expiry(uint64_t now)
{
	uint64_t r = rnd_below(100);

	if (r < 10)
		return now > 50 ? now - rnd_below(50) : 0;		/* past */
	if (r < 40)
		return now + rnd_below(100);
	if (r < 65)
		return now + rnd_below(5000);
	if (r < 85)
		return now + rnd_below(400000);
	if (r < 92) {					/* just around a boundary */
		unsigned k = 6 * (1 + (unsigned)rnd_below(6));

		return (((now >> k) + 1) << k) + rnd_below(3) - 1;
	}
	return now + rnd_below((uint64_t)1 << 38);
}

static void
random_once(uint64_t seed, uint64_t start, int steps)
{
	struct model *m = xcalloc(1, sizeof(*m));
	uint64_t now = start;

	M = m;
	rng_state = seed;
	m->w = twheel_new(start);
	m->cursor = start;
	init_all(m->t, RN, model_cb);
	for (int step = 0; step < steps; step++) {
		uint64_t r = rnd_below(100);
		int id = (int)rnd_below(RN);

		if (r < 50) {
			uint64_t e = rnd_expiry(now);

			twheel_add(m->w, &m->t[id].timer, e);
			ref_add(m, id, e);
		} else if (r < 62) {
			twheel_cancel(&m->t[id].timer);
			m->ref[id].pending = false;
		} else {
			int wlog[1 << 16], nw;
			size_t nwheel, nref;
			uint64_t nf = m->nfired;
			uint64_t j = rnd_below(100);

			if (j < 5)
				now -= rnd_below(now - start + 1 < 100 ? now - start + 1 : 100);
			else if (j < 45)
				now += rnd_below(10);
			else if (j < 75)
				now += rnd_below(2000);
			else if (j < 95)
				now += rnd_below(300000);
			else
				now += rnd_below((uint64_t)1 << 37);

			m->nlog = 0;
			fire_wheel = true;
			m->run_now = now;
			nwheel = twheel_run(m->w, now);
			nw = m->nlog;
			memcpy(wlog, m->log, sizeof(int) * (size_t)nw);

			m->nlog = 0;
			m->nfired = nf;
			fire_wheel = false;
			nref = ref_run(m, now);
			if (nwheel != nref || nw != m->nlog || memcmp(wlog, m->log, sizeof(int) * (size_t)nw) != 0)
				fail_msg("seed %llu step %d now %llu: wheel fired %zu, reference %zu",
				    (unsigned long long)seed, step, (unsigned long long)now, nwheel, nref);
		}

		/* Same pending set, and next_expiry no later than the earliest. */
		{
			size_t pending = 0;
			uint64_t min = UINT64_MAX;

			for (int i = 0; i < RN; i++) {
				assert_int_equal(twheel_pending(&m->t[i].timer), m->ref[i].pending);
				if (m->ref[i].pending) {
					pending++;
					if (m->t[i].timer.expire < min)
						min = m->t[i].timer.expire;
				}
			}
			assert_int_equal(twheel_count(m->w), pending);
			if (pending == 0)
				assert_int_equal(twheel_next_expiry(m->w), UINT64_MAX);
			else
				assert_true(twheel_next_expiry(m->w) <= min);
		}
	}
	twheel_free(m->w);
	free(m);
}

static void
test_random_reference(void **state)
{
	random_once(1, 0, 20000);
	random_once(0x1234567887654321ULL, 1000000007, 20000);
	random_once(42, ((uint64_t)1 << 36) - 5000, 20000);
	random_once(7, ((uint64_t)1 << 48) - 300000, 20000);
}

/* A million timers with random expiries: each fires once, in order. */
static struct {
	uint64_t	last;		/* last expiry fired */
	uint64_t	n;		/* fired so far */
	bool		order_ok;	/* never went backwards */
	bool		time_ok;	/* never fired before its time */
	uint8_t		*fired;		/* per timer: times fired */
} mil;

static void
million_cb(struct twheel_timer *t)
{
	struct tt *x = container_of(t, struct tt, timer);

	if (t->expire < mil.last)
		mil.order_ok = false;
	if (t->expire > cur_now)
		mil.time_ok = false;
	mil.last = t->expire;
	mil.fired[x->id]++;
	mil.n++;
}

static void
test_million(void **state)
{
	enum { N = 1000000 };
	struct tt *a = xmalloc(N * sizeof(*a));
	uint64_t start = 123456789, now = start;
	int64_t t0, t1, t2;
	struct twheel *w = twheel_new(start);

	rng_state = 0xdeadbeefcafef00dULL;
	memset(&mil, 0, sizeof(mil));
	mil.order_ok = mil.time_ok = true;
	mil.fired = xcalloc(N, 1);
	init_all(a, N, million_cb);
	t0 = util_mono_us();
	for (int i = 0; i < N; i++) {
		/* Mostly within a day, some up to ~9 years, past the top span. */
		uint64_t span = i % 100 == 0 ? (uint64_t)1 << 38 : 86400000;

		twheel_add(w, &a[i].timer, start + rnd_below(span));
	}
	t1 = util_mono_us();
	assert_int_equal(twheel_count(w), N);
	while (twheel_count(w) > 0) {
		now += 1 + rnd_below((uint64_t)1 << rnd_below(32));
		run(w, now);
	}
	t2 = util_mono_us();
	assert_true(mil.order_ok);
	assert_true(mil.time_ok);
	assert_int_equal(mil.n, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(mil.fired[i], 1);
	printf("# 1000000 timers: add %.1f ms, run %.1f ms\n",
	    (double)(t1 - t0) / 1000, (double)(t2 - t1) / 1000);
	free(mil.fired);
	free(a);
	twheel_free(w);
}


/* What the arm callback was asked, in order. */
static struct {
	uint64_t	at[16];
	int		n;
} arms;

static void
arm_cb(uint64_t expire_ms, void *arg)
{
	assert_ptr_equal(arg, &arms);
	if (arms.n < (int)NELEM(arms.at))
		arms.at[arms.n] = expire_ms;
	arms.n++;
}

static struct twheel *arm_wheel;

static void
readd_self_cb(struct twheel_timer *t)
{
	record_cb(t);
	/* Inside a run: the wheel asks once, at the end. */
	twheel_add(arm_wheel, t, 10000);
}

/*
 * The wheel re-arms its owner's timer by itself: when an add moves the
 * earliest expiry earlier, never for a later one, and once at the end of
 * a run for what is left (adds from callbacks included).
 */
static void
test_arm_callback(void **state)
{
	struct tt a[4];
	struct twheel *w = twheel_new(0);

	memset(&arms, 0, sizeof(arms));
	init_all(a, NELEM(a), record_cb);
	twheel_set_arm(w, arm_cb, &arms);
	assert_int_equal(arms.n, 0);		/* nothing pending: nothing asked */
	twheel_add(w, &a[0].timer, 500);
	assert_int_equal(arms.n, 1);
	assert_true(arms.at[0] <= 500);
	twheel_add(w, &a[1].timer, 900);	/* later: no new request */
	assert_int_equal(arms.n, 1);
	twheel_add(w, &a[2].timer, 20);		/* earlier: asked at once */
	assert_int_equal(arms.n, 2);
	assert_int_equal(arms.at[1], 20);
	twheel_cancel(&a[2].timer);		/* a cancel never asks */
	assert_int_equal(arms.n, 2);
	arm_wheel = w;
	twheel_timer_init(&a[3].timer, readd_self_cb);
	twheel_add(w, &a[3].timer, 30);		/* 20 is still asked for: it comes first */
	assert_int_equal(arms.n, 2);
	trace_reset();
	assert_int_equal(twheel_run(w, 600), 2);	/* a[3] then a[0] */
	/* One request at the end of the run, for the earliest left (a[1] at 900). */
	assert_int_equal(arms.n, 3);
	assert_true(arms.at[2] <= 900 && arms.at[2] > 600);
	/* a[3] re-adds itself for the time being fired: overdue, asked for at once. */
	assert_int_equal(twheel_run(w, 20000), 2);
	assert_int_equal(arms.n, 4);
	assert_int_equal(arms.at[3], 10000);
	twheel_cancel(&a[3].timer);
	assert_int_equal(twheel_run(w, 20001), 0);
	assert_int_equal(arms.n, 4);		/* nothing left: nothing asked */
	twheel_free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_levels),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_readd),
		cmocka_unit_test(test_cascade_boundaries),
		cmocka_unit_test(test_add_from_callback),
		cmocka_unit_test(test_nested_run),
		cmocka_unit_test(test_big_jumps),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_random_reference),
		cmocka_unit_test(test_million),
		cmocka_unit_test(test_arm_callback),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
