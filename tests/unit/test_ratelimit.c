/*
 * Unit tests for ratelimit: the token bucket arithmetic (burst, refill,
 * retry-after and reset, rate 0, clock jumps both ways), the bounded
 * in-process table and its eviction, subject validation, and the
 * per-worker limiter's Redis path (EVALSHA, NOSCRIPT then EVAL, errors,
 * timeouts, late replies, fallback counters) against a stand-in for rds,
 * plus the response headers and the 429 answer against a stand-in for
 * httpd.  The Lua script itself runs against a real Redis in
 * tests/integration/test_ratelimit.py.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/ratelimit.h"
#include "orderflow/rds.h"

#define T0	1700000000000LL	/* start of the test clock, ms */

/* ------------------------------------------------------------------ */
/* Stand-ins for rds and httpd: the test links ratelimit.c alone. */

#define FAKE_MAX_CALLS 64

/* A command ratelimit sent to the fake rds. */
struct fake_call {
	char	text[4096];	/* the command, formatted */
	rds_cb	*cb;
	void	*arg;
	bool	answered;
};

static struct {
	bool		connected;	/* what rds_connected says */
	bool		refuse;		/* rds_command returns false */
	int		ncalls;
	struct fake_call calls[FAKE_MAX_CALLS];
} fake_rds;

static struct {
	int	status;		/* of the last httpd_error, 0 if none */
	char	code[64];
	char	message[256];
} fake_httpd;

static int fake_rds_dummy;

bool
rds_connected(const struct rds *r)
{
	return fake_rds.connected;
}

bool
rds_command(struct rds *r, rds_cb *cb, void *arg, const char *fmt, ...)
{
	struct fake_call *c;
	va_list ap;

	if (!fake_rds.connected || fake_rds.refuse)
		return false;
	assert_true(fake_rds.ncalls < FAKE_MAX_CALLS);
	c = &fake_rds.calls[fake_rds.ncalls++];
	/* ratelimit formats with %s and %lld only, which printf reads the same way. */
	va_start(ap, fmt);
	vsnprintf(c->text, sizeof(c->text), fmt, ap);
	va_end(ap);
	c->cb = cb;
	c->arg = arg;
	c->answered = false;
	return true;
}

void
httpd_error(struct httpd_req *hr, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	fake_httpd.status = status;
	snprintf(fake_httpd.code, sizeof(fake_httpd.code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(fake_httpd.message, sizeof(fake_httpd.message), fmt, ap);
	va_end(ap);
}

/* Answer call i with reply (NULL: the connection went away). */
static void
fake_answer(int i, redisReply *reply)
{
	struct fake_call *c = &fake_rds.calls[i];

	assert_false(c->answered);
	c->answered = true;
	c->cb(reply, c->arg);
}

/* Answer call i with the script's array {allowed, remaining, reset_ms, retry_ms}. */
static void
fake_answer_script(int i, long long allowed, long long remaining, long long reset,
    long long retry)
{
	redisReply el[4] = {
		{ .type = REDIS_REPLY_INTEGER, .integer = allowed },
		{ .type = REDIS_REPLY_INTEGER, .integer = remaining },
		{ .type = REDIS_REPLY_INTEGER, .integer = reset },
		{ .type = REDIS_REPLY_INTEGER, .integer = retry },
	};
	redisReply *elp[4] = { &el[0], &el[1], &el[2], &el[3] };
	redisReply arr = { .type = REDIS_REPLY_ARRAY, .elements = 4, .element = elp };

	fake_answer(i, &arr);
}

/* Answer call i with an error reply. */
static void
fake_answer_error(int i, const char *text)
{
	redisReply err = { .type = REDIS_REPLY_ERROR, .str = (char *)text, .len = strlen(text) };

	fake_answer(i, &err);
}

/* What the callback received. */
struct got {
	int		calls;
	struct rl_result res;
};

static void
got_cb(const struct rl_result *res, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->res = *res;
}

static struct config *
test_config(int64_t rate, int64_t burst, int64_t timeout_ms)
{
	char *cause = NULL;
	struct config *cfg = config_load_string("", "t.conf", &cause);

	assert_non_null(cfg);
	cfg->ratelimit.rate = rate;
	cfg->ratelimit.burst = burst;
	cfg->redis.command_timeout = timeout_ms;
	return cfg;
}

static int
fake_reset(void **state)
{
	memset(&fake_rds, 0, sizeof(fake_rds));
	memset(&fake_httpd, 0, sizeof(fake_httpd));
	return 0;
}

/* ------------------------------------------------------------------ */
/* The bucket */

/* burst requests at once, then refusals with the right retry-after. */
static void
test_burst_then_refusal(void **state)
{
	struct rl_bucket b;
	struct rl_result r;

	rl_init(&b, 5, T0);
	for (int i = 0; i < 5; i++) {
		rl_take(&b, 1, 5, T0, &r);
		assert_true(r.allowed);
		assert_int_equal(r.source, RL_SOURCE_LOCAL);
		assert_int_equal(r.limit, 5);
		assert_int_equal(r.remaining, 4 - i);
		assert_int_equal(r.retry_after_ms, 0);
		assert_int_equal(r.retry_after_s, 0);
		assert_int_equal(r.reset_ms, (i + 1) * 1000);
		assert_int_equal(r.reset_s, i + 1);
	}
	for (int i = 0; i < 3; i++) {
		rl_take(&b, 1, 5, T0, &r);
		assert_false(r.allowed);
		assert_int_equal(r.remaining, 0);
		assert_int_equal(r.retry_after_ms, 1000);
		assert_int_equal(r.retry_after_s, 1);
		assert_int_equal(r.reset_ms, 5000);
		assert_int_equal(r.reset_s, 5);
	}
}

/* Tokens come back at rate a second, never beyond burst. */
static void
test_refill(void **state)
{
	struct rl_bucket b;
	struct rl_result r;

	rl_init(&b, 3, T0);
	for (int i = 0; i < 3; i++)
		rl_take(&b, 10, 3, T0, &r);
	rl_take(&b, 10, 3, T0 + 50, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_ms, 50);
	assert_int_equal(r.retry_after_s, 1);
	rl_take(&b, 10, 3, T0 + 100, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 0);
	/* 10 s idle: full again, not 100 tokens. */
	rl_take(&b, 10, 3, T0 + 10100, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 2);
	assert_int_equal(r.reset_ms, 100);
	assert_int_equal(r.reset_s, 1);
	/* Steady rate: one request every 100 ms is always allowed, forever. */
	for (int i = 0; i < 3; i++)
		rl_take(&b, 10, 3, T0 + 10100, &r);
	for (int i = 1; i <= 1000; i++) {
		rl_take(&b, 10, 3, T0 + 10100 + (int64_t)i * 100, &r);
		assert_true(r.allowed);
		assert_int_equal(r.remaining, 0);
	}
}

/* Fractional rates: retry_after is rounded up, and waiting exactly that long is enough. */
static void
test_retry_after_exact(void **state)
{
	struct rl_bucket b;
	struct rl_result r;
	int64_t now = T0;

	rl_init(&b, 2, now);
	rl_take(&b, 3, 2, now, &r);
	rl_take(&b, 3, 2, now, &r);
	assert_true(r.allowed);
	assert_int_equal(r.reset_ms, 667);	/* 2 tokens at 3/s: 666.67 ms */
	rl_take(&b, 3, 2, now, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_ms, 334);
	assert_int_equal(r.retry_after_s, 1);
	rl_take(&b, 3, 2, now + 333, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_ms, 1);
	rl_take(&b, 3, 2, now + 334, &r);
	assert_true(r.allowed);

	/* Every refusal's retry_after_ms is enough, at several rates. */
	for (int64_t rate = 1; rate <= 1000; rate = rate * 3 + 1) {
		rl_init(&b, 4, now);
		for (int i = 0; i < 500; i++) {
			rl_take(&b, rate, 4, now, &r);
			if (!r.allowed) {
				assert_true(r.retry_after_ms >= 1);
				assert_true(r.retry_after_ms <= (1000 + rate - 1) / rate);
				assert_true(r.retry_after_s >= 1);
				now += r.retry_after_ms;
				rl_take(&b, rate, 4, now, &r);
				assert_true(r.allowed);
			}
		}
	}
	/* Retry-After in whole seconds for slow rates: 1 token a second, 0.5 s in. */
	rl_init(&b, 1, T0);
	rl_take(&b, 1, 1, T0, &r);
	rl_take(&b, 1, 1, T0 + 500, &r);
	assert_int_equal(r.retry_after_ms, 500);
	assert_int_equal(r.retry_after_s, 1);
}

/* rate 0: everything allowed, no limit reported, the bucket untouched. */
static void
test_rate_zero(void **state)
{
	struct rl_bucket b;
	struct rl_result r;

	rl_init(&b, 2, T0);
	for (int i = 0; i < 100; i++) {
		rl_take(&b, 0, 2, T0, &r);
		assert_true(r.allowed);
		assert_int_equal(r.source, RL_SOURCE_OFF);
		assert_int_equal(r.limit, 0);
		assert_int_equal(r.retry_after_s, 0);
	}
	assert_true(b.tokens == 2.0);
	rl_take(&b, -5, 2, T0, &r);
	assert_true(r.allowed);
}

/* Huge jumps neither overflow nor overfill; burst < 1 counts as 1. */
static void
test_large_jumps(void **state)
{
	struct rl_bucket b;
	struct rl_result r;

	rl_init(&b, 10, INT64_MIN / 2);
	for (int i = 0; i < 10; i++)
		rl_take(&b, 1000000, 10, INT64_MIN / 2, &r);
	rl_take(&b, 1000000, 10, INT64_MAX / 2, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 9);
	assert_true(b.tokens <= 10.0);
	rl_take(&b, 1000000, 10, INT64_MAX, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 9);

	/* The largest configurable values. */
	rl_init(&b, 10000000, T0);
	rl_take(&b, 1000000, 10000000, T0, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 9999999);
	assert_int_equal(r.reset_ms, 1);

	rl_init(&b, 0, T0);
	rl_take(&b, 1, 0, T0, &r);
	assert_true(r.allowed);
	assert_int_equal(r.limit, 1);
	rl_take(&b, 1, 0, T0, &r);
	assert_false(r.allowed);
}

/* A clock that goes backwards refills nothing until it passes the last use again. */
static void
test_clock_backwards(void **state)
{
	struct rl_bucket b;
	struct rl_result r;

	rl_init(&b, 2, T0 + 1000);
	rl_take(&b, 1, 2, T0 + 1000, &r);
	rl_take(&b, 1, 2, T0 + 1000, &r);
	rl_take(&b, 1, 2, T0, &r);		/* 1 s back */
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_ms, 1000);
	assert_int_equal(b.at_ms, T0 + 1000);
	rl_take(&b, 1, 2, T0 + 1999, &r);
	assert_false(r.allowed);
	rl_take(&b, 1, 2, T0 + 2000, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 0);
	/* A lowered burst caps a fuller bucket. */
	rl_init(&b, 100, T0);
	rl_take(&b, 1, 5, T0, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 4);
	assert_int_equal(r.limit, 5);
}

/* ------------------------------------------------------------------ */
/* The in-process table */

static void
test_table_independent(void **state)
{
	struct rl_table *t = rl_table_new(100);
	struct rl_result r;

	for (int i = 0; i < 3; i++)
		rl_table_take(t, "c:a", 1, 3, T0, &r);
	rl_table_take(t, "c:a", 1, 3, T0, &r);
	assert_false(r.allowed);
	rl_table_take(t, "c:b", 1, 3, T0, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 2);
	rl_table_take(t, "k:a", 1, 3, T0, &r);
	assert_true(r.allowed);
	assert_int_equal(rl_table_count(t), 3);
	assert_true(rl_table_has(t, "c:a"));
	assert_false(rl_table_has(t, "c:c"));
	rl_table_free(t);
}

/* Bounded: the least recently used subject goes; a busy one stays. */
static void
test_table_eviction(void **state)
{
	struct rl_table *t = rl_table_new(100);
	struct rl_result r;
	char s[32];

	rl_table_take(t, "c:busy", 1, 2, T0, &r);
	rl_table_take(t, "c:busy", 1, 2, T0, &r);
	for (int i = 0; i < 250; i++) {
		snprintf(s, sizeof(s), "c:%d", i);
		rl_table_take(t, s, 1, 2, T0, &r);
		rl_table_take(t, "c:busy", 1, 2, T0, &r);
		assert_false(r.allowed);	/* still the same, empty bucket */
		assert_true(rl_table_count(t) <= 100);
	}
	assert_int_equal(rl_table_count(t), 100);
	assert_int_equal(rl_table_evictions(t), 151);
	assert_true(rl_table_has(t, "c:busy"));
	assert_false(rl_table_has(t, "c:0"));
	assert_false(rl_table_has(t, "c:150"));
	assert_true(rl_table_has(t, "c:151"));
	assert_true(rl_table_has(t, "c:249"));
	/* An evicted subject comes back with a full bucket. */
	rl_table_take(t, "c:0", 1, 2, T0, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 1);
	rl_table_free(t);

	/* The real size: 10000 subjects, then eviction. */
	t = rl_table_new(RATELIMIT_TABLE_MAX);
	for (int i = 0; i < 2 * RATELIMIT_TABLE_MAX; i++) {
		snprintf(s, sizeof(s), "k:%08d", i);
		rl_table_take(t, s, 5, 5, T0 + i, &r);
		assert_true(r.allowed);
	}
	assert_int_equal(rl_table_count(t), RATELIMIT_TABLE_MAX);
	assert_int_equal(rl_table_evictions(t), RATELIMIT_TABLE_MAX);
	for (int i = RATELIMIT_TABLE_MAX; i < 2 * RATELIMIT_TABLE_MAX; i++) {
		snprintf(s, sizeof(s), "k:%08d", i);
		assert_true(rl_table_has(t, s));
	}
	rl_table_free(t);
	rl_table_free(NULL);
}

static void
test_subject_valid(void **state)
{
	char longest[RATELIMIT_SUBJECT_MAX + 2];

	assert_true(ratelimit_subject_valid("c:7b0d1f3e-9c2a-4f57-8e1a-0a5f3c2b1d4e"));
	assert_true(ratelimit_subject_valid("k:42"));
	assert_true(ratelimit_subject_valid("k:key_1.2:3-A"));
	assert_false(ratelimit_subject_valid(NULL));
	assert_false(ratelimit_subject_valid(""));
	assert_false(ratelimit_subject_valid("c:"));
	assert_false(ratelimit_subject_valid("c"));
	assert_false(ratelimit_subject_valid("C:abc"));
	assert_false(ratelimit_subject_valid("cc:abc"));
	assert_false(ratelimit_subject_valid("c:a b"));
	assert_false(ratelimit_subject_valid("c:a\r\nPING"));
	assert_false(ratelimit_subject_valid("c:*"));
	assert_false(ratelimit_subject_valid("c:{x}"));
	memset(longest, 'a', sizeof(longest));
	longest[0] = 'c';
	longest[1] = ':';
	longest[RATELIMIT_SUBJECT_MAX] = '\0';
	assert_true(ratelimit_subject_valid(longest));
	longest[RATELIMIT_SUBJECT_MAX] = 'a';
	longest[RATELIMIT_SUBJECT_MAX + 1] = '\0';
	assert_false(ratelimit_subject_valid(longest));
}

/* ------------------------------------------------------------------ */
/* The limiter */

static void
test_limiter_off(void **state)
{
	struct event_base *base = event_base_new();
	struct config *cfg = test_config(0, 10, 2000);
	struct ratelimit *rl = ratelimit_new(base, (struct rds *)&fake_rds_dummy, cfg);
	struct ratelimit_stats before, after;
	struct got g = { 0 };

	fake_rds.connected = true;
	ratelimit_stats_get(&before);
	for (int i = 0; i < 50; i++)
		assert_true(ratelimit_check(rl, "c:x", got_cb, &g));
	assert_int_equal(g.calls, 50);
	assert_true(g.res.allowed);
	assert_int_equal(g.res.source, RL_SOURCE_OFF);
	assert_int_equal(fake_rds.ncalls, 0);
	ratelimit_stats_get(&after);
	assert_int_equal(after.allowed - before.allowed, 50);
	assert_int_equal(after.fallback, before.fallback);
	/* An invalid subject: refused by the call, no callback. */
	assert_false(ratelimit_check(rl, "x", got_cb, &g));
	assert_int_equal(g.calls, 50);
	ratelimit_free(rl);
	config_unref(cfg);
	event_base_free(base);
}

/* EVALSHA with the key and the limits; the reply's numbers become the result. */
static void
test_limiter_redis(void **state)
{
	struct event_base *base = event_base_new();
	struct config *cfg = test_config(5, 10, 2000);
	struct ratelimit *rl = ratelimit_new(base, (struct rds *)&fake_rds_dummy, cfg);
	struct ratelimit_stats before, after;
	struct got g = { 0 };
	char want[128];

	fake_rds.connected = true;
	ratelimit_stats_get(&before);
	assert_true(ratelimit_check(rl, "c:abc", got_cb, &g));
	assert_int_equal(g.calls, 0);
	assert_int_equal(ratelimit_pending(rl), 1);
	snprintf(want, sizeof(want), "EVALSHA %s 1 of:rl:c:abc 5 10", ratelimit_script_sha());
	assert_string_equal(fake_rds.calls[0].text, want);
	fake_answer_script(0, 1, 9, 200, 0);
	assert_int_equal(g.calls, 1);
	assert_true(g.res.allowed);
	assert_int_equal(g.res.source, RL_SOURCE_REDIS);
	assert_int_equal(g.res.limit, 10);
	assert_int_equal(g.res.remaining, 9);
	assert_int_equal(g.res.reset_ms, 200);
	assert_int_equal(g.res.reset_s, 1);
	assert_int_equal(g.res.retry_after_s, 0);
	assert_int_equal(ratelimit_pending(rl), 0);

	assert_true(ratelimit_check(rl, "c:abc", got_cb, &g));
	fake_answer_script(1, 0, 0, 2000, 1500);
	assert_false(g.res.allowed);
	assert_int_equal(g.res.retry_after_ms, 1500);
	assert_int_equal(g.res.retry_after_s, 2);
	assert_int_equal(g.res.reset_s, 2);

	ratelimit_stats_get(&after);
	assert_int_equal(after.allowed - before.allowed, 1);
	assert_int_equal(after.limited - before.limited, 1);
	assert_int_equal(after.fallback - before.fallback, 0);
	assert_int_equal(after.redis_errors - before.redis_errors, 0);

	/* A reload changes what is sent. */
	cfg->ratelimit.rate = 7;
	cfg->ratelimit.burst = 3;
	ratelimit_reconfigure(rl, cfg);
	assert_true(ratelimit_check(rl, "k:9", got_cb, &g));
	snprintf(want, sizeof(want), "EVALSHA %s 1 of:rl:k:9 7 3", ratelimit_script_sha());
	assert_string_equal(fake_rds.calls[2].text, want);
	fake_answer_script(2, 1, 2, 143, 0);
	assert_int_equal(g.res.limit, 3);
	ratelimit_free(rl);
	config_unref(cfg);
	event_base_free(base);
}

/* NOSCRIPT: the same check is sent again as EVAL with the script; no error counted. */
static void
test_limiter_noscript(void **state)
{
	struct event_base *base = event_base_new();
	struct config *cfg = test_config(5, 10, 2000);
	struct ratelimit *rl = ratelimit_new(base, (struct rds *)&fake_rds_dummy, cfg);
	struct ratelimit_stats before, after;
	struct got g = { 0 };
	char want[64];

	fake_rds.connected = true;
	ratelimit_stats_get(&before);
	assert_true(ratelimit_check(rl, "c:abc", got_cb, &g));
	fake_answer_error(0, "NOSCRIPT No matching script. Please use EVAL.");
	assert_int_equal(g.calls, 0);
	assert_int_equal(fake_rds.ncalls, 2);
	assert_int_equal(strncmp(fake_rds.calls[1].text, "EVAL ", 5), 0);
	assert_non_null(strstr(fake_rds.calls[1].text, ratelimit_script()));
	snprintf(want, sizeof(want), " 1 of:rl:c:abc 5 10");
	assert_string_equal(fake_rds.calls[1].text + strlen(fake_rds.calls[1].text) - strlen(want),
	    want);
	fake_answer_script(1, 1, 9, 200, 0);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.res.source, RL_SOURCE_REDIS);

	/* NOSCRIPT again in answer to the EVAL: an error, decided in-process. */
	assert_true(ratelimit_check(rl, "c:abc", got_cb, &g));
	fake_answer_error(2, "NOSCRIPT again");
	fake_answer_error(3, "NOSCRIPT again");
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	ratelimit_stats_get(&after);
	assert_int_equal(after.redis_errors - before.redis_errors, 1);
	assert_int_equal(after.fallback - before.fallback, 1);

	/* NOSCRIPT while the connection cannot take the EVAL: in-process too. */
	assert_true(ratelimit_check(rl, "c:abc", got_cb, &g));
	fake_rds.refuse = true;
	fake_answer_error(4, "NOSCRIPT No matching script.");
	assert_int_equal(g.calls, 3);
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	assert_int_equal(ratelimit_pending(rl), 0);
	ratelimit_free(rl);
	config_unref(cfg);
	event_base_free(base);
}

/* Down, error, lost connection, odd reply: in-process decisions, counted; back on Redis after. */
static void
test_limiter_fallback(void **state)
{
	struct event_base *base = event_base_new();
	struct config *cfg = test_config(1, 2, 2000);
	struct ratelimit *rl = ratelimit_new(base, (struct rds *)&fake_rds_dummy, cfg);
	struct ratelimit_stats before, st;
	struct got g = { 0 };
	redisReply status = { .type = REDIS_REPLY_STATUS, .str = (char *)"OK", .len = 2 };
	redisReply three[3] = { { .type = REDIS_REPLY_INTEGER }, { .type = REDIS_REPLY_INTEGER },
		{ .type = REDIS_REPLY_INTEGER } };
	redisReply *threep[3] = { &three[0], &three[1], &three[2] };
	redisReply short_arr = { .type = REDIS_REPLY_ARRAY, .elements = 3, .element = threep };

	ratelimit_stats_get(&before);
	assert_int_equal(before.fallback_active, 0);
	/* Not connected: decided at once, from a fresh local bucket of 2. */
	fake_rds.connected = false;
	assert_true(ratelimit_check(rl, "c:a", got_cb, &g));
	assert_int_equal(g.calls, 1);
	assert_true(g.res.allowed);
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	assert_int_equal(g.res.remaining, 1);
	ratelimit_stats_get(&st);
	assert_int_equal(st.fallback_active, 1);
	assert_int_equal(st.fallback - before.fallback, 1);
	assert_int_equal(st.redis_errors - before.redis_errors, 0);
	assert_true(ratelimit_check(rl, "c:a", got_cb, &g));
	assert_true(ratelimit_check(rl, "c:a", got_cb, &g));
	assert_false(g.res.allowed);
	assert_int_equal(g.res.retry_after_s, 1);

	/* Connected again: Redis decides and the gauge drops. */
	fake_rds.connected = true;
	assert_true(ratelimit_check(rl, "c:a", got_cb, &g));
	fake_answer_script(0, 1, 1, 1000, 0);
	assert_int_equal(g.res.source, RL_SOURCE_REDIS);
	ratelimit_stats_get(&st);
	assert_int_equal(st.fallback_active, 0);

	/* An error reply, a lost connection, a reply of the wrong shape. */
	assert_true(ratelimit_check(rl, "c:b", got_cb, &g));
	fake_answer_error(1, "OOM command not allowed when used memory > 'maxmemory'.");
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	assert_true(ratelimit_check(rl, "c:b", got_cb, &g));
	fake_answer(2, NULL);
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	assert_true(ratelimit_check(rl, "c:b", got_cb, &g));
	fake_answer(3, &status);
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	assert_false(g.res.allowed);	/* the third from c:b's local bucket of 2 */
	assert_true(ratelimit_check(rl, "c:b", got_cb, &g));
	fake_answer(4, &short_arr);
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	/* Connected but the command cannot be queued. */
	fake_rds.refuse = true;
	assert_true(ratelimit_check(rl, "c:b", got_cb, &g));
	assert_int_equal(g.res.source, RL_SOURCE_LOCAL);
	assert_int_equal(fake_rds.ncalls, 5);
	ratelimit_stats_get(&st);
	assert_int_equal(st.redis_errors - before.redis_errors, 4);
	assert_int_equal(st.fallback - before.fallback, 8);
	assert_int_equal(st.fallback_active, 1);
	ratelimit_free(rl);
	ratelimit_stats_get(&st);
	assert_int_equal(st.fallback_active, 0);
	config_unref(cfg);
	event_base_free(base);
}

static void
test_limiter_timeout_loop_exit(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Run base for ms milliseconds. */
static void
run_for(struct event_base *base, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	event_base_once(base, -1, EV_TIMEOUT, test_limiter_timeout_loop_exit, base, &tv);
	event_base_dispatch(base);
}

/*
 * No answer within command_timeout: decided in-process, with every check
 * queued behind it; new checks skip Redis until it answers; late answers
 * are dropped.
 */
static void
test_limiter_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct config *cfg = test_config(1, 5, 100);
	struct ratelimit *rl = ratelimit_new(base, (struct rds *)&fake_rds_dummy, cfg);
	struct ratelimit_stats before, st;
	struct got g1 = { 0 }, g2 = { 0 }, g3 = { 0 };
	int64_t start = util_mono_us();

	fake_rds.connected = true;
	ratelimit_stats_get(&before);
	assert_true(ratelimit_check(rl, "c:slow", got_cb, &g1));
	run_for(base, 30);
	assert_int_equal(g1.calls, 0);
	assert_true(ratelimit_check(rl, "c:slow", got_cb, &g2));
	assert_int_equal(ratelimit_pending(rl), 2);
	run_for(base, 150);			/* the first is due at 100 ms */
	assert_true(util_mono_us() - start >= 100000);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g1.res.source, RL_SOURCE_LOCAL);
	assert_true(g1.res.allowed);
	assert_int_equal(g2.calls, 1);		/* stuck behind the first: decided with it */
	assert_int_equal(g2.res.remaining, 3);	/* the same local bucket */
	assert_int_equal(ratelimit_pending(rl), 0);

	/* Redis still owes those answers: new checks do not wait behind them. */
	assert_true(ratelimit_check(rl, "c:slow", got_cb, &g3));
	assert_int_equal(g3.calls, 1);
	assert_int_equal(g3.res.source, RL_SOURCE_LOCAL);
	assert_int_equal(fake_rds.ncalls, 2);
	/* Redis answers at last: dropped, nothing called twice. */
	fake_answer_script(0, 1, 4, 1000, 0);
	assert_true(ratelimit_check(rl, "c:slow", got_cb, &g3));
	assert_int_equal(g3.calls, 2);
	assert_int_equal(fake_rds.ncalls, 2);
	fake_answer_script(1, 1, 3, 2000, 0);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 1);
	ratelimit_stats_get(&st);
	assert_int_equal(st.redis_errors - before.redis_errors, 2);
	assert_int_equal(st.fallback - before.fallback, 4);
	assert_int_equal(st.fallback_active, 1);

	/* Every answer is in: Redis again.  Free answers the check still waiting. */
	assert_true(ratelimit_check(rl, "c:slow", got_cb, &g3));
	assert_int_equal(fake_rds.ncalls, 3);
	assert_int_equal(g3.calls, 2);
	assert_int_equal(ratelimit_pending(rl), 1);
	ratelimit_free(rl);
	assert_int_equal(g3.calls, 3);
	ratelimit_stats_get(&st);
	assert_int_equal(st.fallback_active, 0);
	/* The connection closing later hands back the check that outlived the limiter. */
	fake_answer(2, NULL);
	assert_int_equal(g3.calls, 3);
	config_unref(cfg);
	event_base_free(base);
}

/* A callback that checks again from inside the callback (as a handler might). */
struct again {
	struct ratelimit *rl;
	int		calls;
};

static void
again_cb(const struct rl_result *res, void *arg)
{
	struct again *a = arg;

	if (++a->calls < 5)
		assert_true(ratelimit_check(a->rl, "c:re", again_cb, a));
}

static void
test_limiter_reentrant(void **state)
{
	struct event_base *base = event_base_new();
	struct config *cfg = test_config(1, 3, 2000);
	struct again a = { 0 };

	a.rl = ratelimit_new(base, (struct rds *)&fake_rds_dummy, cfg);
	fake_rds.connected = false;
	assert_true(ratelimit_check(a.rl, "c:re", again_cb, &a));
	assert_int_equal(a.calls, 5);
	fake_rds.connected = true;
	a.calls = 0;
	assert_true(ratelimit_check(a.rl, "c:re", again_cb, &a));
	for (int i = 0; i < 5; i++)
		fake_answer_script(i, 0, 0, 3000, 1000);
	assert_int_equal(a.calls, 5);
	assert_int_equal(ratelimit_pending(a.rl), 0);
	ratelimit_free(a.rl);
	config_unref(cfg);
	event_base_free(base);
}

/* ------------------------------------------------------------------ */
/* HTTP */

static void
test_headers(void **state)
{
	struct evhttp_request *req = evhttp_request_new(NULL, NULL);
	struct httpd_req hr = { .req = req };
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct rl_result ok = { .allowed = true, .limit = 10, .remaining = 7, .reset_ms = 2500 };
	struct rl_result no = { .allowed = false, .limit = 10, .remaining = 0, .reset_ms = 9001,
		.retry_after_ms = 100 };
	struct rl_result off = { .allowed = true, .source = RL_SOURCE_OFF };
	int n = 0;

	rl_result_seconds(&ok);
	rl_result_seconds(&no);
	ratelimit_headers(&hr, &off);
	assert_null(evhttp_find_header(h, "RateLimit-Limit"));
	ratelimit_headers(&hr, &ok);
	assert_string_equal(evhttp_find_header(h, "RateLimit-Limit"), "10");
	assert_string_equal(evhttp_find_header(h, "RateLimit-Remaining"), "7");
	assert_string_equal(evhttp_find_header(h, "RateLimit-Reset"), "3");
	assert_null(evhttp_find_header(h, "Retry-After"));

	/* The 429 replaces the values rather than adding a second copy. */
	ratelimit_reply_429(&hr, &no);
	assert_int_equal(fake_httpd.status, 429);
	assert_string_equal(fake_httpd.code, "rate_limited");
	assert_non_null(strstr(fake_httpd.message, "1 s"));
	assert_string_equal(evhttp_find_header(h, "RateLimit-Remaining"), "0");
	assert_string_equal(evhttp_find_header(h, "RateLimit-Reset"), "10");
	assert_string_equal(evhttp_find_header(h, "Retry-After"), "1");
	for (struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
		n++;
	assert_int_equal(n, 4);
	evhttp_request_free(req);
}

static void
test_metrics_and_script(void **state)
{
	struct evbuffer *out = evbuffer_new();
	char *text;
	size_t len;
	const char *sha = ratelimit_script_sha();

	ratelimit_metrics(out);
	len = evbuffer_get_length(out);
	text = calloc(1, len + 1);
	evbuffer_remove(out, text, len);
	assert_non_null(strstr(text, "# TYPE orderflow_ratelimit_requests_total counter\n"));
	assert_non_null(strstr(text, "orderflow_ratelimit_requests_total{result=\"allowed\"} "));
	assert_non_null(strstr(text, "orderflow_ratelimit_requests_total{result=\"limited\"} "));
	assert_non_null(strstr(text, "\norderflow_ratelimit_fallback_total "));
	assert_non_null(strstr(text, "\norderflow_ratelimit_redis_errors_total "));
	assert_non_null(strstr(text, "# TYPE orderflow_ratelimit_fallback_active gauge\n"));
	assert_non_null(strstr(text, "\norderflow_ratelimit_fallback_active 0\n"));
	free(text);
	evbuffer_free(out);

	assert_int_equal(strlen(sha), 40);
	assert_int_equal(strspn(sha, "0123456789abcdef"), 40);
	assert_ptr_equal(sha, ratelimit_script_sha());
	assert_non_null(strstr(ratelimit_script(), "PEXPIRE"));
	assert_non_null(strstr(ratelimit_script(), "redis.call('TIME')"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_refusal),
		cmocka_unit_test(test_refill),
		cmocka_unit_test(test_retry_after_exact),
		cmocka_unit_test(test_rate_zero),
		cmocka_unit_test(test_large_jumps),
		cmocka_unit_test(test_clock_backwards),
		cmocka_unit_test(test_table_independent),
		cmocka_unit_test(test_table_eviction),
		cmocka_unit_test(test_subject_valid),
		cmocka_unit_test_setup(test_limiter_off, fake_reset),
		cmocka_unit_test_setup(test_limiter_redis, fake_reset),
		cmocka_unit_test_setup(test_limiter_noscript, fake_reset),
		cmocka_unit_test_setup(test_limiter_fallback, fake_reset),
		cmocka_unit_test_setup(test_limiter_timeout, fake_reset),
		cmocka_unit_test_setup(test_limiter_reentrant, fake_reset),
		cmocka_unit_test_setup(test_headers, fake_reset),
		cmocka_unit_test(test_metrics_and_script),
	};

	/* Fallback warnings would clutter the TAP stream. */
	log_set_level(LOG_ERROR);
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
