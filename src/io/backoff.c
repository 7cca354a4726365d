/*
 * backoff: capped exponential retry delays with equal jitter.
 *
 * The growth is computed in double so a large attempt number saturates at
 * the cap instead of overflowing; jitter keeps the upper half random so
 * retries from many orders that failed together spread out.
 */
#include "config.h"

#include <math.h>

#include "orderflow/backoff.h"

const struct backoff_policy BACKOFF_TIKTOK = {
	.max_attempts = 5, .base_ms = 1000, .max_ms = 30000, .multiplier = 2.0,
};
const struct backoff_policy BACKOFF_WORKFLOW = {
	.max_attempts = 3, .base_ms = 2000, .max_ms = 60000, .multiplier = 1.5,
};
const struct backoff_policy BACKOFF_INVENTORY = {
	.max_attempts = 2, .base_ms = 500, .max_ms = 5000, .multiplier = 2.0,
};

/* The capped delay before jitter. */
static int64_t
backoff_cap(const struct backoff_policy *p, int attempt)
{
	double d;

	if (p->max_ms <= 0 || p->base_ms <= 0)
		return 0;
	if (attempt < 1)
		attempt = 1;
	d = (double)p->base_ms * pow(p->multiplier, attempt - 1);
	/* Also catches NaN and infinity from odd multipliers. */
	if (!(d < (double)p->max_ms))
		return p->max_ms;
	return d < 0 ? 0 : (int64_t)d;
}

int64_t
backoff_delay(const struct backoff_policy *p, int attempt, uint32_t rnd)
{
	int64_t d = backoff_cap(p, attempt);

	return d / 2 + (int64_t)(rnd % (uint64_t)(d / 2 + 1));
}

bool
backoff_exhausted(const struct backoff_policy *p, int attempts_made)
{
	return attempts_made >= p->max_attempts;
}
