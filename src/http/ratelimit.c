/*
 * ratelimit: token buckets for the dashboard REST API (see
 * include/orderflow/ratelimit.h).
 *
 * Owns the Lua script and its SHA-1, each worker's struct ratelimit (its
 * checks waiting for Redis, its in-process table) and the process-wide
 * counters.  A check goes to Redis as EVALSHA; the reply decides it, a
 * NOSCRIPT error sends it once more as EVAL (which also loads the script
 * for the next EVALSHA), and anything else (no connection, an error, no
 * answer within redis.command_timeout) decides it from the worker's table.
 * Checks waiting for Redis are kept oldest first, so one libevent timer for
 * the oldest deadline finds every timeout.  Redis answers a connection in
 * order, so when the oldest times out, every later one is decided
 * in-process with it, and new checks skip Redis until one of those is
 * answered: a hung server costs one timeout, not one per request.  A check
 * decided by its timeout stays allocated until Redis answers it or the
 * connection closes (hiredis still holds it as its callback argument);
 * that late answer is dropped.
 *
 * The clock is the Redis server's (TIME inside the script), not the
 * callers': with several daemons on several hosts, the callers' clocks
 * differ, and a bucket refilled by one host's clock and drained by
 * another's would drift by their skew on every request.  The in-process
 * table uses the worker's monotonic clock, as nothing else shares it.
 */
#include "config.h"

#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/ratelimit.h"
#include "orderflow/rds.h"

/* Tokens within this of a whole one count as whole: 0.1 * 10 is 0.99999... in binary. */
#define RL_EPSILON 1e-9

/*
 * The shared bucket.  KEYS[1] = of:rl:<subject>, ARGV[1] = rate (tokens a
 * second), ARGV[2] = burst.  Returns {allowed, remaining, reset_ms,
 * retry_after_ms}.  The arithmetic is rl_take's, step for step.  Redis 7
 * replicates a script's effects, so TIME before a write is allowed; older
 * servers are asked to do so by replicate_commands.
 */
static const char rl_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "if burst < 1 then burst = 1 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(h[1])\n"
    "local ts = tonumber(h[2])\n"
    "if tokens == nil or ts == nil then\n"
    "  tokens = burst\n"
    "  ts = now\n"
    "end\n"
    "if now > ts then\n"
    "  tokens = tokens + (now - ts) * rate / 1000\n"
    "  ts = now\n"
    "end\n"
    "if tokens > burst then tokens = burst end\n"
    "if tokens < 0 then tokens = 0 end\n"
    "local allowed = 0\n"
    "if tokens + 1e-9 >= 1 then\n"
    "  tokens = tokens - 1\n"
    "  if tokens < 0 then tokens = 0 end\n"
    "  allowed = 1\n"
    "end\n"
    "local reset = math.ceil((burst - tokens) * 1000 / rate)\n"
    "local retry = 0\n"
    "if allowed == 0 then retry = math.ceil((1 - tokens) * 1000 / rate) end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)\n"
    "if reset < 1 then\n"
    "  redis.call('PEXPIRE', KEYS[1], 1)\n"
    "else\n"
    "  redis.call('PEXPIRE', KEYS[1], reset)\n"
    "end\n"
    "return {allowed, math.floor(tokens + 1e-9), reset, retry}\n";

static pthread_once_t rl_sha_once = PTHREAD_ONCE_INIT;
static char rl_sha[2 * 20 + 1];		/* hex SHA-1 of rl_script */

/* Process-wide counters; every worker adds to them. */
static atomic_ullong rl_allowed;	/* decisions that let a request through */
static atomic_ullong rl_limited;	/* decisions that refused one */
static atomic_ullong rl_fallback;	/* decisions made in-process */
static atomic_ullong rl_redis_errors;	/* commands failed, errored or timed out */
static atomic_int rl_fallback_limiters;	/* limiters now deciding in-process */

/* One subject in an in-process table. */
struct rl_entry {
	struct rl_entry	*next;			/* hash chain */
	TAILQ_ENTRY(rl_entry) lru;		/* least recently used first */
	uint64_t	hash;			/* of subject, for the chain walk */
	size_t		len;			/* of subject */
	struct rl_bucket bucket;		/* the subject's tokens */
	char		subject[RATELIMIT_SUBJECT_MAX + 1];	/* the key, NUL-terminated */
};

struct rl_table {
	struct rl_entry	**slots;		/* chains; nslots is a power of two */
	size_t		nslots;			/* at least max, so chains stay short */
	size_t		count;			/* entries in use */
	size_t		max;			/* entries allowed */
	uint64_t	seed;			/* hash seed, random per table */
	uint64_t	evictions;		/* entries reused for another subject */
	TAILQ_HEAD(, rl_entry) lru;		/* every entry, least recently used first */
};

/* A check sent to Redis. */
struct rl_check {
	TAILQ_ENTRY(rl_check) entry;		/* in rl->waiting, or rl->abandoned once done */
	struct ratelimit *rl;			/* NULL once the limiter was freed */
	ratelimit_cb	*cb;			/* the caller's, run once with the decision */
	void		*arg;			/* for cb */
	int64_t		deadline_us;		/* mono time its timeout falls due */
	bool		done;			/* decided by its timeout; the reply only frees it */
	bool		retried;		/* NOSCRIPT was answered and EVAL sent */
	char		subject[RATELIMIT_SUBJECT_MAX + 1];	/* validated, for the key and the fallback */
};

struct ratelimit {
	struct event_base *base;		/* the owning worker's loop */
	struct rds	*rds;			/* the owning worker's Redis connection, or NULL */
	struct rl_table	*table;			/* in-process buckets */
	struct event	*timer;			/* the oldest waiting check's deadline */
	TAILQ_HEAD(, rl_check) waiting;		/* sent, not decided, oldest first */
	TAILQ_HEAD(, rl_check) abandoned;	/* decided by timeout, reply still due */
	int		nwaiting;		/* checks in waiting */
	int64_t		rate;			/* ratelimit.rate */
	int64_t		burst;			/* ratelimit.burst */
	int64_t		timeout_ms;		/* redis.command_timeout */
	bool		in_fallback;		/* the last decision was in-process */
};

/* Compute the script's SHA-1 once per process. */
static void
rl_sha_init(void)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (EVP_Digest(rl_script, strlen(rl_script), md, &len, EVP_sha1(), NULL) != 1 || len != 20) {
		log_error("cannot compute SHA-1 of the rate limit script", "%s", "");
		abort();	/* only fails without SHA-1 or memory */
	}
	for (unsigned int i = 0; i < len; i++)
		snprintf(rl_sha + 2 * i, 3, "%02x", md[i]);
}

const char *
ratelimit_script(void)
{
	return rl_script;
}

const char *
ratelimit_script_sha(void)
{
	pthread_once(&rl_sha_once, rl_sha_init);
	return rl_sha;
}

/* ------------------------------------------------------------------ */
/* The bucket */

void
rl_init(struct rl_bucket *b, int64_t burst, int64_t now_ms)
{
	b->tokens = (double)(burst < 1 ? 1 : burst);
	b->at_ms = now_ms;
}

void
rl_result_seconds(struct rl_result *res)
{
	res->reset_s = res->reset_ms > 0 ? (res->reset_ms + 999) / 1000 : 0;
	if (res->allowed)
		res->retry_after_s = 0;
	else
		res->retry_after_s = res->retry_after_ms > 1000 ? (res->retry_after_ms + 999) / 1000 : 1;
}

void
rl_take(struct rl_bucket *b, int64_t rate, int64_t burst, int64_t now_ms, struct rl_result *res)
{
	double tokens = b->tokens, cap;

	memset(res, 0, sizeof(*res));
	if (rate <= 0) {
		res->allowed = true;
		res->source = RL_SOURCE_OFF;
		return;
	}
	if (burst < 1)
		burst = 1;
	cap = (double)burst;
	res->source = RL_SOURCE_LOCAL;
	res->limit = burst;
	/* In double: a jump of any size neither overflows nor refills past cap. */
	if (now_ms > b->at_ms) {
		tokens += ((double)now_ms - (double)b->at_ms) * (double)rate / 1000.0;
		b->at_ms = now_ms;
	}
	if (tokens > cap)
		tokens = cap;
	if (tokens < 0)
		tokens = 0;
	if (tokens + RL_EPSILON >= 1) {
		tokens -= 1;
		if (tokens < 0)
			tokens = 0;
		res->allowed = true;
	}
	b->tokens = tokens;
	res->remaining = (int64_t)floor(tokens + RL_EPSILON);
	res->reset_ms = (int64_t)ceil((cap - tokens) * 1000.0 / (double)rate);
	if (!res->allowed)
		res->retry_after_ms = (int64_t)ceil((1 - tokens) * 1000.0 / (double)rate);
	rl_result_seconds(res);
}

/* ------------------------------------------------------------------ */
/* The in-process table */

/* FNV-1a over the subject, from a per-table seed. */
static uint64_t
rl_hash(uint64_t seed, const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

struct rl_table *
rl_table_new(size_t max)
{
	struct rl_table *t = xcalloc(1, sizeof(*t));

	t->max = max < 1 ? 1 : max;
	/* Chains average at most one entry when full. */
	t->nslots = 16;
	while (t->nslots < t->max)
		t->nslots *= 2;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
	t->seed = ((uint64_t)util_random() << 32) | util_random();
	TAILQ_INIT(&t->lru);
	return t;
}

void
rl_table_free(struct rl_table *t)
{
	struct rl_entry *e;

	if (t == NULL)
		return;
	while ((e = TAILQ_FIRST(&t->lru)) != NULL) {
		TAILQ_REMOVE(&t->lru, e, lru);
		free(e);
	}
	free(t->slots);
	free(t);
}

/* The entry for subject (len bytes, hash h), or NULL. */
static struct rl_entry *
rl_table_find(const struct rl_table *t, const char *subject, size_t len, uint64_t h)
{
	struct rl_entry *e;

	for (e = t->slots[h & (t->nslots - 1)]; e != NULL; e = e->next)
		if (e->hash == h && e->len == len && memcmp(e->subject, subject, len) == 0)
			return e;
	return NULL;
}

/* Take e out of its hash chain. */
static void
rl_table_unlink(struct rl_table *t, struct rl_entry *e)
{
	struct rl_entry **pp = &t->slots[e->hash & (t->nslots - 1)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
}

bool
rl_table_has(const struct rl_table *t, const char *subject)
{
	size_t len = strnlen(subject, RATELIMIT_SUBJECT_MAX);

	return rl_table_find(t, subject, len, rl_hash(t->seed, subject, len)) != NULL;
}

void
rl_table_take(struct rl_table *t, const char *subject, int64_t rate, int64_t burst,
    int64_t now_ms, struct rl_result *res)
{
	size_t len = strnlen(subject, RATELIMIT_SUBJECT_MAX);
	uint64_t h = rl_hash(t->seed, subject, len);
	struct rl_entry *e = rl_table_find(t, subject, len, h);

	if (e != NULL) {
		TAILQ_REMOVE(&t->lru, e, lru);
	} else {
		if (t->count < t->max) {
			e = xcalloc(1, sizeof(*e));
			t->count++;
		} else {
			/* Full: the least recently used subject makes room. */
			e = TAILQ_FIRST(&t->lru);
			TAILQ_REMOVE(&t->lru, e, lru);
			rl_table_unlink(t, e);
			t->evictions++;
		}
		memcpy(e->subject, subject, len);
		e->subject[len] = '\0';
		e->len = len;
		e->hash = h;
		rl_init(&e->bucket, burst, now_ms);
		e->next = t->slots[h & (t->nslots - 1)];
		t->slots[h & (t->nslots - 1)] = e;
	}
	TAILQ_INSERT_TAIL(&t->lru, e, lru);
	rl_take(&e->bucket, rate, burst, now_ms, res);
}

size_t
rl_table_count(const struct rl_table *t)
{
	return t->count;
}

uint64_t
rl_table_evictions(const struct rl_table *t)
{
	return t->evictions;
}

/* ------------------------------------------------------------------ */
/* The per-worker limiter */

bool
ratelimit_subject_valid(const char *s)
{
	size_t n;

	if (s == NULL || s[0] < 'a' || s[0] > 'z' || s[1] != ':' || s[2] == '\0')
		return false;
	for (n = 2; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n >= RATELIMIT_SUBJECT_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* Note whether decisions come from the in-process table; logs each change. */
static void
ratelimit_set_fallback(struct ratelimit *rl, bool on, const char *why)
{
	if (rl->in_fallback == on)
		return;
	rl->in_fallback = on;
	if (on) {
		atomic_fetch_add_explicit(&rl_fallback_limiters, 1, memory_order_relaxed);
		log_warn("rate limiter using in-process buckets", "reason=%s", log_quote(why));
	} else {
		atomic_fetch_sub_explicit(&rl_fallback_limiters, 1, memory_order_relaxed);
		log_info("rate limiter using redis again", "%s", "");
	}
}

/* Count a decision and hand it to the caller. */
static void
ratelimit_deliver(ratelimit_cb *cb, void *arg, const struct rl_result *res)
{
	atomic_fetch_add_explicit(res->allowed ? &rl_allowed : &rl_limited, 1,
	    memory_order_relaxed);
	if (res->source == RL_SOURCE_LOCAL)
		atomic_fetch_add_explicit(&rl_fallback, 1, memory_order_relaxed);
	cb(res, arg);
}

/* Decide from the worker's own bucket for subject. */
static void
ratelimit_decide_local(struct ratelimit *rl, const char *subject, ratelimit_cb *cb, void *arg)
{
	struct rl_result res;

	rl_table_take(rl->table, subject, rl->rate, rl->burst, util_mono_us() / 1000, &res);
	ratelimit_deliver(cb, arg, &res);
}

/* Redis cannot decide (why): fall back to the worker's own bucket. */
static void
ratelimit_local(struct ratelimit *rl, const char *subject, ratelimit_cb *cb, void *arg,
    const char *why)
{
	ratelimit_set_fallback(rl, true, why);
	ratelimit_decide_local(rl, subject, cb, arg);
}

/* A command failed or timed out: count it and decide in-process. */
static void
ratelimit_redis_failed(struct ratelimit *rl, struct rl_check *c, const char *why)
{
	atomic_fetch_add_explicit(&rl_redis_errors, 1, memory_order_relaxed);
	log_debug("rate limit redis command failed", "subject=%s reason=%s",
	    log_quote(c->subject), log_quote(why));
	ratelimit_local(rl, c->subject, c->cb, c->arg, why);
}

/* Keep the timer on the oldest waiting check's deadline. */
static void
ratelimit_arm(struct ratelimit *rl)
{
	struct rl_check *c = TAILQ_FIRST(&rl->waiting);
	int64_t us;
	struct timeval tv;

	if (c == NULL || evtimer_pending(rl->timer, NULL))
		return;
	us = c->deadline_us - util_mono_us();
	if (us < 0)
		us = 0;
	tv.tv_sec = us / 1000000;
	tv.tv_usec = us % 1000000;
	evtimer_add(rl->timer, &tv);
}

/*
 * The oldest waiting check is past its deadline.  Redis answers one
 * connection in order, so every check sent after it is stuck behind it:
 * all of them are decided in-process now, and until Redis answers one of
 * them (or the connection is dropped) new checks are not sent at all.
 */
static void
ratelimit_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ratelimit *rl = arg;
	struct rl_check *c = TAILQ_FIRST(&rl->waiting);

	if (c == NULL)
		return;
	if (c->deadline_us > util_mono_us()) {
		ratelimit_arm(rl);
		return;
	}
	while ((c = TAILQ_FIRST(&rl->waiting)) != NULL) {
		TAILQ_REMOVE(&rl->waiting, c, entry);
		rl->nwaiting--;
		c->done = true;
		TAILQ_INSERT_TAIL(&rl->abandoned, c, entry);
		ratelimit_redis_failed(rl, c, "timeout");
	}
}

/* Read the script's {allowed, remaining, reset_ms, retry_after_ms}. */
static bool
ratelimit_parse(const redisReply *rep, int64_t burst, struct rl_result *res)
{
	memset(res, 0, sizeof(*res));
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4)
		return false;
	for (size_t i = 0; i < 4; i++)
		if (rep->element[i]->type != REDIS_REPLY_INTEGER || rep->element[i]->integer < 0)
			return false;
	res->allowed = rep->element[0]->integer != 0;
	res->source = RL_SOURCE_REDIS;
	res->limit = burst < 1 ? 1 : burst;
	res->remaining = rep->element[1]->integer;
	res->reset_ms = rep->element[2]->integer;
	res->retry_after_ms = res->allowed ? 0 : rep->element[3]->integer;
	rl_result_seconds(res);
	return true;
}

static bool ratelimit_send(struct ratelimit *rl, struct rl_check *c, bool eval) MUSTCHECK;

/* Redis answered a check (reply NULL: the connection went away first). */
static void
ratelimit_on_reply(struct redisReply *reply, void *arg)
{
	struct rl_check *c = arg;
	struct ratelimit *rl = c->rl;
	struct rl_result res;

	if (rl == NULL) {
		free(c);
		return;
	}
	if (c->done) {
		/* Decided by its timeout already: a late answer (Redis is back, or gone). */
		TAILQ_REMOVE(&rl->abandoned, c, entry);
		free(c);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !c->retried &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		/* The server lost the script (restart, SCRIPT FLUSH): EVAL loads it again. */
		c->retried = true;
		if (ratelimit_send(rl, c, true))
			return;
	}
	TAILQ_REMOVE(&rl->waiting, c, entry);
	rl->nwaiting--;
	if (reply == NULL)
		ratelimit_redis_failed(rl, c, "connection lost");
	else if (reply->type == REDIS_REPLY_ERROR)
		ratelimit_redis_failed(rl, c, reply->str);
	else if (!ratelimit_parse(reply, rl->burst, &res))
		ratelimit_redis_failed(rl, c, "unexpected reply");
	else {
		ratelimit_set_fallback(rl, false, NULL);
		ratelimit_deliver(c->cb, c->arg, &res);
	}
	free(c);
}

/* Send c's script call: EVALSHA, or the whole script with EVAL. */
static bool
ratelimit_send(struct ratelimit *rl, struct rl_check *c, bool eval)
{
	if (eval)
		return rds_command(rl->rds, ratelimit_on_reply, c, "EVAL %s 1 " RATELIMIT_KEY_PREFIX
		    "%s %lld %lld", rl_script, c->subject, (long long)rl->rate, (long long)rl->burst);
	return rds_command(rl->rds, ratelimit_on_reply, c, "EVALSHA %s 1 " RATELIMIT_KEY_PREFIX
	    "%s %lld %lld", rl_sha, c->subject, (long long)rl->rate, (long long)rl->burst);
}

struct ratelimit *
ratelimit_new(struct event_base *base, struct rds *rds, const struct config *cfg)
{
	struct ratelimit *rl = xcalloc(1, sizeof(*rl));

	ratelimit_script_sha();
	rl->base = base;
	rl->rds = rds;
	rl->table = rl_table_new(RATELIMIT_TABLE_MAX);
	rl->timer = evtimer_new(base, ratelimit_on_timer, rl);
	TAILQ_INIT(&rl->waiting);
	TAILQ_INIT(&rl->abandoned);
	ratelimit_reconfigure(rl, cfg);
	return rl;
}

void
ratelimit_reconfigure(struct ratelimit *rl, const struct config *cfg)
{
	rl->rate = cfg->ratelimit.rate;
	rl->burst = cfg->ratelimit.burst < 1 ? 1 : cfg->ratelimit.burst;
	rl->timeout_ms = cfg->redis.command_timeout;
	if (rl->rate <= 0)
		ratelimit_set_fallback(rl, false, NULL);
}

void
ratelimit_free(struct ratelimit *rl)
{
	struct rl_check *c;

	if (rl == NULL)
		return;
	/* Answer what still waits; hiredis frees each check through its callback later. */
	while ((c = TAILQ_FIRST(&rl->waiting)) != NULL) {
		TAILQ_REMOVE(&rl->waiting, c, entry);
		rl->nwaiting--;
		c->done = true;
		c->rl = NULL;
		ratelimit_decide_local(rl, c->subject, c->cb, c->arg);
	}
	while ((c = TAILQ_FIRST(&rl->abandoned)) != NULL) {
		TAILQ_REMOVE(&rl->abandoned, c, entry);
		c->rl = NULL;
	}
	ratelimit_set_fallback(rl, false, NULL);
	event_free(rl->timer);
	rl_table_free(rl->table);
	free(rl);
}

bool
ratelimit_check(struct ratelimit *rl, const char *subject, ratelimit_cb *cb, void *arg)
{
	struct rl_result res;
	struct rl_check *c;

	if (!ratelimit_subject_valid(subject))
		return false;
	if (rl->rate <= 0) {
		memset(&res, 0, sizeof(res));
		res.allowed = true;
		res.source = RL_SOURCE_OFF;
		ratelimit_deliver(cb, arg, &res);
		return true;
	}
	if (rl->rds == NULL || !rds_connected(rl->rds)) {
		ratelimit_local(rl, subject, cb, arg, "redis not connected");
		return true;
	}
	if (!TAILQ_EMPTY(&rl->abandoned)) {
		/* A check timed out and is still unanswered: this one would wait behind it. */
		ratelimit_local(rl, subject, cb, arg, "redis not answering");
		return true;
	}
	c = xcalloc(1, sizeof(*c));
	c->rl = rl;
	c->cb = cb;
	c->arg = arg;
	snprintf(c->subject, sizeof(c->subject), "%s", subject);
	c->deadline_us = util_mono_us() + rl->timeout_ms * 1000;
	if (!ratelimit_send(rl, c, false)) {
		free(c);
		ratelimit_local(rl, subject, cb, arg, "redis not connected");
		return true;
	}
	TAILQ_INSERT_TAIL(&rl->waiting, c, entry);
	rl->nwaiting++;
	ratelimit_arm(rl);
	return true;
}

int
ratelimit_pending(const struct ratelimit *rl)
{
	return rl->nwaiting;
}

/* ------------------------------------------------------------------ */
/* HTTP */

/* Set header name to v, replacing an earlier value. */
static void
ratelimit_set_header(struct evkeyvalq *h, const char *name, int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	evhttp_remove_header(h, name);
	evhttp_add_header(h, name, buf);
}

void
ratelimit_headers(struct httpd_req *hr, const struct rl_result *res)
{
	struct evkeyvalq *h;

	if (res->limit <= 0)
		return;
	h = evhttp_request_get_output_headers(hr->req);
	ratelimit_set_header(h, "RateLimit-Limit", res->limit);
	ratelimit_set_header(h, "RateLimit-Remaining", res->remaining);
	ratelimit_set_header(h, "RateLimit-Reset", res->reset_s);
	if (!res->allowed)
		ratelimit_set_header(h, "Retry-After", res->retry_after_s);
}

void
ratelimit_reply_429(struct httpd_req *hr, const struct rl_result *res)
{
	ratelimit_headers(hr, res);
	httpd_error(hr, 429, "rate_limited", "too many requests; try again in %lld s",
	    (long long)(res->retry_after_s > 0 ? res->retry_after_s : 1));
}

/* ------------------------------------------------------------------ */
/* Counters */

void
ratelimit_stats_get(struct ratelimit_stats *st)
{
	st->allowed = atomic_load_explicit(&rl_allowed, memory_order_relaxed);
	st->limited = atomic_load_explicit(&rl_limited, memory_order_relaxed);
	st->fallback = atomic_load_explicit(&rl_fallback, memory_order_relaxed);
	st->redis_errors = atomic_load_explicit(&rl_redis_errors, memory_order_relaxed);
	st->fallback_active = atomic_load_explicit(&rl_fallback_limiters, memory_order_relaxed);
}

void
ratelimit_metrics(struct evbuffer *out)
{
	struct ratelimit_stats st;

	ratelimit_stats_get(&st);
	evbuffer_add_printf(out,
	    "# HELP orderflow_ratelimit_requests_total Rate limit decisions on API requests, by result.\n"
	    "# TYPE orderflow_ratelimit_requests_total counter\n"
	    "orderflow_ratelimit_requests_total{result=\"allowed\"} %llu\n"
	    "orderflow_ratelimit_requests_total{result=\"limited\"} %llu\n"
	    "# HELP orderflow_ratelimit_fallback_total Rate limit decisions made from a worker's "
	    "in-process buckets (Redis down, failing or slow).\n"
	    "# TYPE orderflow_ratelimit_fallback_total counter\n"
	    "orderflow_ratelimit_fallback_total %llu\n"
	    "# HELP orderflow_ratelimit_redis_errors_total Rate limit commands to Redis that failed "
	    "or timed out.\n"
	    "# TYPE orderflow_ratelimit_redis_errors_total counter\n"
	    "orderflow_ratelimit_redis_errors_total %llu\n"
	    "# HELP orderflow_ratelimit_fallback_active 1 while a worker decides from its in-process "
	    "buckets.\n"
	    "# TYPE orderflow_ratelimit_fallback_active gauge\n"
	    "orderflow_ratelimit_fallback_active %d\n",
	    (unsigned long long)st.allowed, (unsigned long long)st.limited,
	    (unsigned long long)st.fallback, (unsigned long long)st.redis_errors,
	    st.fallback_active > 0 ? 1 : 0);
}
