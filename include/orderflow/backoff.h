/*
 * backoff: retry policies with capped exponential delays and jitter.
 *
 * A policy says how often to try and how long to wait between tries; the
 * caller keeps the attempt count and a timer (twheel) of its own.  After
 * attempt n (1 = the first call) fails with a retryable error:
 *
 *	if (backoff_exhausted(p, n))
 *		give up;
 *	else
 *		retry after backoff_delay(p, n, util_random()) ms;
 *
 * max_attempts counts every attempt, the first included, so a policy
 * allows max_attempts - 1 retries.  The named policies are the ones in the
 * spec's "Retry Mechanisms".  Pure functions: any thread may call them.
 */
#ifndef ORDERFLOW_BACKOFF_H
#define ORDERFLOW_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

/* One retry policy. */
struct backoff_policy {
	int	max_attempts;	/* attempts in all, the first included */
	int64_t	base_ms;	/* delay before the first retry, before jitter */
	int64_t	max_ms;		/* cap on any delay */
	double	multiplier;	/* growth per retry */
};

extern const struct backoff_policy BACKOFF_TIKTOK;	/* TikTok Shop API: 5, 1 s, x2, cap 30 s */
extern const struct backoff_policy BACKOFF_WORKFLOW;	/* workflow actions: 3, 2 s, x1.5, cap 60 s */
extern const struct backoff_policy BACKOFF_INVENTORY;	/* inventory service: 2, 0.5 s, x2, cap 5 s */

/*
 * The delay in ms before retry number attempt (1 = the first retry):
 * d = min(max_ms, base_ms * multiplier^(attempt - 1)), then "equal
 * jitter" d/2 + rnd % (d/2 + 1), so it lies in [d/2, d] and never above
 * max_ms.  rnd is a uniform random value (util_random()); attempt < 1
 * counts as 1.
 */
int64_t backoff_delay(const struct backoff_policy *p, int attempt, uint32_t rnd);

/* True when attempts_made attempts leave no retry under the policy. */
bool backoff_exhausted(const struct backoff_policy *p, int attempts_made);

#endif
