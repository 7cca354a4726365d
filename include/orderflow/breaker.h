/*
 * breaker: a circuit breaker per upstream integration (TikTok Shop API,
 * inventory service, ...), one per worker, timed by the worker's twheel.
 *
 * CLOSED: calls go through; each failure is stamped with its time, and
 * failure_threshold failures within window_ms open the breaker.  A success
 * does not clear earlier failures: they stop counting only by growing
 * older than window_ms (a sliding window, the spec's "monitoringPeriod").
 * OPEN: calls are refused until reset_ms has passed (the reset timer, or
 * breaker_allow noticing the time first).  HALF_OPEN: one probe call at a
 * time is let through; its success closes the breaker with the window
 * cleared, its failure opens it again for a fresh reset_ms, and a probe
 * that reports nothing within reset_ms counts as failed.
 *
 * Outcomes reported while OPEN, or while HALF_OPEN with no probe out, come
 * from calls let through before the breaker opened; they are ignored.
 *
 * The owning worker calls everything here; other threads may read the
 * atomic fields (state and counters) for metrics and health.
 */
#ifndef ORDERFLOW_BREAKER_H
#define ORDERFLOW_BREAKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "orderflow/twheel.h"

#define BREAKER_MAX_THRESHOLD	64	/* failures the window remembers; larger thresholds are clamped */
#define BREAKER_NAME_MAX	32	/* name buffer, NUL included; longer names are cut */

enum breaker_state {
	BREAKER_CLOSED,		/* calls go through; failures are counted */
	BREAKER_OPEN,		/* calls are refused until the reset timer fires */
	BREAKER_HALF_OPEN,	/* one probe at a time decides: closed, or open again */
};

/* Tuning for one upstream (the spec's circuitBreakerConfig). */
struct breaker_config {
	int	failure_threshold;	/* failures within window_ms that open it, 1..64 */
	int64_t	window_ms;		/* how long a failure counts (monitoringPeriod) */
	int64_t	reset_ms;		/* how long it stays open (resetTimeout); also the probe deadline */
};

extern const struct breaker_config BREAKER_TIKTOK;	/* 10 failures in 30 s; open 60 s */
extern const struct breaker_config BREAKER_INVENTORY;	/* 5 failures in 15 s; open 30 s */

/* One breaker; embed it in the integration's per-worker state. */
struct breaker {
	char			name[BREAKER_NAME_MAX];	/* for logs and metrics: "tiktok" */
	struct breaker_config	cfg;		/* copied, threshold clamped */
	struct twheel		*wheel;		/* the owning worker's wheel */
	struct twheel_timer	reset_timer;	/* OPEN: ends the open period; HALF_OPEN: probe deadline */
	uint64_t		fail_at[BREAKER_MAX_THRESHOLD];	/* ring: times of the latest failures, ms */
	int			fail_next;	/* ring slot the next failure goes to */
	int			fail_count;	/* failures in the ring, <= threshold */
	uint64_t		reset_at;	/* OPEN: when it may turn HALF_OPEN, ms */
	bool			probe_in_flight;	/* HALF_OPEN: the one probe is out */
	atomic_int		state;		/* enum breaker_state; any thread may read */
	atomic_ullong		opens_total;	/* times it opened (CLOSED or HALF_OPEN -> OPEN) */
	atomic_ullong		rejected_total;	/* calls breaker_allow refused */
	atomic_ullong		failures_total;	/* failures reported, ignored ones included */
};

/* Set up b as CLOSED; name is copied; w is the worker's wheel. */
void breaker_init(struct breaker *b, const char *name, const struct breaker_config *cfg,
    struct twheel *w);
/* May a call go out now?  CLOSED: yes; OPEN: no (counted); HALF_OPEN: one probe. */
bool breaker_allow(struct breaker *b, uint64_t now_ms);
/* A call let through succeeded: a HALF_OPEN probe closes the breaker. */
void breaker_success(struct breaker *b, uint64_t now_ms);
/* A call let through failed: may open it (CLOSED), or reopen it (HALF_OPEN probe). */
void breaker_failure(struct breaker *b, uint64_t now_ms);
/* Cancel the timer; call before freeing b or its wheel. */
void breaker_stop(struct breaker *b);

/* Current state; safe from any thread. */
enum breaker_state breaker_get_state(const struct breaker *b);
/* Failures that still count at now_ms (for metrics and tests). */
int breaker_window_failures(const struct breaker *b, uint64_t now_ms);
/* "closed", "open", "half_open". */
const char *breaker_state_name(enum breaker_state s);
/* 0 closed, 1 half open, 2 open: the gauge value, and "worse" is larger. */
int breaker_state_rank(enum breaker_state s);

#endif
