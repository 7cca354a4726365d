/*
 * ratelimit: the token buckets that limit the dashboard REST API, one
 * bucket per subject ("c:<creator uuid>" for a JWT, "k:<api key id>" for
 * an API key).
 *
 * The bucket that counts lives in Redis, in the hash of:rl:<subject>
 * (fields tokens and ts), and is updated by one Lua script that refills,
 * takes a token and sets the key to expire once the bucket would be full
 * again, all atomically and on the Redis server's clock: every worker of
 * every daemon sharing the Redis server shares the bucket.  The script is
 * sent with EVALSHA and, when the server answers NOSCRIPT, again with EVAL.
 * While Redis is down, or a command fails or takes longer than
 * redis.command_timeout, the worker decides from a bucket table of its own
 * (bounded, least recently used subjects evicted): the limit then holds
 * per worker rather than across the service.  rate = 0 lets everything
 * through without asking Redis.
 *
 * The arithmetic (rl_take) and the in-process table (rl_table_*) are pure
 * and shared by both paths; the Lua script repeats rl_take line by line.
 *
 * One struct ratelimit per worker, owned and called by that worker's REST
 * handlers; the counters are process-wide atomics, rendered by health for
 * /metrics from any thread.
 */
#ifndef ORDERFLOW_RATELIMIT_H
#define ORDERFLOW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orderflow/util.h"

struct config;
struct event_base;
struct evbuffer;
struct httpd_req;
struct rds;
struct ratelimit;
struct rl_table;

#define RATELIMIT_SUBJECT_MAX	80	/* longest subject, in bytes, NUL not included */
#define RATELIMIT_TABLE_MAX	10000	/* subjects a worker's in-process table holds */
#define RATELIMIT_KEY_PREFIX	"of:rl:"	/* Redis key of a subject's bucket: prefix + subject */

/* Where a decision was made. */
enum rl_source {
	RL_SOURCE_OFF,		/* ratelimit.rate is 0: allowed without a bucket */
	RL_SOURCE_REDIS,	/* the shared bucket in Redis */
	RL_SOURCE_LOCAL,	/* the worker's own bucket (Redis down, failed or slow) */
};

/* One token bucket: full at burst tokens, refilled at rate tokens a second. */
struct rl_bucket {
	double		tokens;		/* tokens left after the last take, 0..burst */
	int64_t		at_ms;		/* when tokens was computed, ms on the caller's clock */
};

/* The outcome of one take, what the RateLimit-* headers say. */
struct rl_result {
	bool		allowed;	/* a token was taken */
	enum rl_source	source;		/* which bucket decided */
	int64_t		limit;		/* burst; 0 when there is no limit */
	int64_t		remaining;	/* whole tokens left */
	int64_t		reset_ms;	/* until the bucket is full again */
	int64_t		retry_after_ms;	/* until one token is there; 0 when allowed */
	int64_t		reset_s;	/* reset_ms rounded up to seconds */
	int64_t		retry_after_s;	/* retry_after_ms rounded up, >= 1 when refused, else 0 */
};

/* Called once per ratelimit_check with the decision (res is only valid during the call). */
typedef void ratelimit_cb(const struct rl_result *res, void *arg);

/* Fill b to burst tokens as of now_ms (a bucket never seen before is full). */
void rl_init(struct rl_bucket *b, int64_t burst, int64_t now_ms);
/*
 * Refill b for the time since its last use, then take one token if there
 * is one; fills res.  A clock that went backwards refills nothing until it
 * passes at_ms again.  rate <= 0 allows everything (res->limit = 0).
 */
void rl_take(struct rl_bucket *b, int64_t rate, int64_t burst, int64_t now_ms,
    struct rl_result *res);
/* Fill the seconds fields of res from its millisecond fields. */
void rl_result_seconds(struct rl_result *res);

/* A table of at most max subjects' buckets; the least recently used is evicted. */
struct rl_table *rl_table_new(size_t max);
void rl_table_free(struct rl_table *t);
/* rl_take on subject's bucket (a new subject starts full). */
void rl_table_take(struct rl_table *t, const char *subject, int64_t rate, int64_t burst,
    int64_t now_ms, struct rl_result *res);
/* Subjects held now. */
size_t rl_table_count(const struct rl_table *t);
/* Subjects evicted to make room since the table was made. */
uint64_t rl_table_evictions(const struct rl_table *t);
/* True when subject is in the table (does not touch its recency). */
bool rl_table_has(const struct rl_table *t, const char *subject);

/* True when s is a subject: "<lowercase letter>:" then 1.. of [A-Za-z0-9._:-], bounded. */
bool ratelimit_subject_valid(const char *s);

/*
 * A worker's limiter on the worker's loop and Redis connection (rds NULL:
 * every decision in-process).  rate, burst (ratelimit.*) and the Redis
 * timeout (redis.command_timeout) are read from cfg now and by
 * ratelimit_reconfigure.
 */
struct ratelimit *ratelimit_new(struct event_base *base, struct rds *rds,
    const struct config *cfg);
void ratelimit_reconfigure(struct ratelimit *rl, const struct config *cfg);
/*
 * Free the limiter.  Call it after rds_close, when Redis has answered
 * every check; a check still waiting is decided in-process first.
 */
void ratelimit_free(struct ratelimit *rl);

/*
 * Decide whether subject may make one more request; cb gets the decision
 * exactly once.  It may run before ratelimit_check returns (rate 0, Redis
 * down), so the caller must not touch what cb frees afterwards.  Returns
 * false, without calling cb, when subject is not valid.
 */
bool ratelimit_check(struct ratelimit *rl, const char *subject, ratelimit_cb *cb, void *arg)
	MUSTCHECK;
/* Checks waiting for Redis now. */
int ratelimit_pending(const struct ratelimit *rl);

/* Add RateLimit-Limit/-Remaining/-Reset (and Retry-After when refused); nothing when off. */
void ratelimit_headers(struct httpd_req *hr, const struct rl_result *res);
/* Answer 429 rate_limited with the headers above. */
void ratelimit_reply_429(struct httpd_req *hr, const struct rl_result *res);

/* Process-wide counters, for /metrics and tests. */
struct ratelimit_stats {
	uint64_t	allowed;	/* decisions that let a request through */
	uint64_t	limited;	/* decisions that refused one */
	uint64_t	fallback;	/* decisions made in-process (Redis down, failed or slow) */
	uint64_t	redis_errors;	/* Redis commands that failed, errored or timed out */
	int		fallback_active; /* limiters whose last decision was in-process */
};
void ratelimit_stats_get(struct ratelimit_stats *st);
/* Prometheus text of the counters above. */
void ratelimit_metrics(struct evbuffer *out);

/* The Lua script and its SHA-1 (hex), for tools and tests. */
const char *ratelimit_script(void);
const char *ratelimit_script_sha(void);

#endif
