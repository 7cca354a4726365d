/*
 * breaker: circuit breaker state machine (see include/orderflow/breaker.h).
 *
 * breaker_set_state is the only place the state changes; it logs the
 * transition and does what entering each state needs (clear the window,
 * arm or cancel the reset timer, count opens).  The window is a ring of
 * the last failure_threshold failure times: the breaker opens when the
 * ring is full and its oldest entry is younger than window_ms, which is
 * exactly "failure_threshold failures within window_ms".
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "orderflow/breaker.h"
#include "orderflow/log.h"

const struct breaker_config BREAKER_TIKTOK = {
	.failure_threshold = 10, .window_ms = 30000, .reset_ms = 60000,
};
const struct breaker_config BREAKER_INVENTORY = {
	.failure_threshold = 5, .window_ms = 15000, .reset_ms = 30000,
};

static const char *const breaker_state_names[] = { "closed", "open", "half_open" };

const char *
breaker_state_name(enum breaker_state s)
{
	return (unsigned)s < NELEM(breaker_state_names) ? breaker_state_names[s] : "?";
}

enum breaker_state
breaker_get_state(const struct breaker *b)
{
	return (enum breaker_state)atomic_load_explicit(&b->state, memory_order_relaxed);
}

/* True when a failure stamped at ms still counts at now. */
static bool
breaker_counts(const struct breaker *b, uint64_t at, uint64_t now)
{
	return now < at || now - at < (uint64_t)b->cfg.window_ms;
}

/* Move to state "to" at time now, logging it; the one place state changes. */
static void
breaker_set_state(struct breaker *b, enum breaker_state to, uint64_t now)
{
	enum breaker_state from = breaker_get_state(b);

	if (from == to)
		return;
	log_info("circuit breaker state", "breaker=%s from=%s to=%s", log_quote(b->name),
	    breaker_state_name(from), breaker_state_name(to));
	b->probe_in_flight = false;
	switch (to) {
	case BREAKER_CLOSED:
		b->fail_count = 0;
		b->fail_next = 0;
		twheel_cancel(&b->reset_timer);
		break;
	case BREAKER_OPEN:
		b->fail_count = 0;
		b->fail_next = 0;
		b->reset_at = now + (uint64_t)b->cfg.reset_ms;
		twheel_add(b->wheel, &b->reset_timer, b->reset_at);
		atomic_fetch_add_explicit(&b->opens_total, 1, memory_order_relaxed);
		break;
	case BREAKER_HALF_OPEN:
		twheel_cancel(&b->reset_timer);
		break;
	}
	atomic_store_explicit(&b->state, (int)to, memory_order_relaxed);
}

/* The reset timer: the open period is over, or the probe never answered. */
static void
breaker_timer_cb(struct twheel_timer *t)
{
	struct breaker *b = container_of(t, struct breaker, reset_timer);

	switch (breaker_get_state(b)) {
	case BREAKER_OPEN:
		breaker_set_state(b, BREAKER_HALF_OPEN, t->expire);
		break;
	case BREAKER_HALF_OPEN:
		log_warn("circuit breaker probe timed out", "breaker=%s", log_quote(b->name));
		breaker_set_state(b, BREAKER_OPEN, t->expire);
		break;
	case BREAKER_CLOSED:
		break;
	}
}

void
breaker_init(struct breaker *b, const char *name, const struct breaker_config *cfg,
    struct twheel *w)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->cfg = *cfg;
	if (b->cfg.failure_threshold < 1 || b->cfg.failure_threshold > BREAKER_MAX_THRESHOLD) {
		b->cfg.failure_threshold = b->cfg.failure_threshold < 1 ? 1 : BREAKER_MAX_THRESHOLD;
		log_warn("circuit breaker threshold clamped", "breaker=%s threshold=%d",
		    log_quote(b->name), b->cfg.failure_threshold);
	}
	if (b->cfg.window_ms < 0)
		b->cfg.window_ms = 0;
	if (b->cfg.reset_ms < 0)
		b->cfg.reset_ms = 0;
	b->wheel = w;
	twheel_timer_init(&b->reset_timer, breaker_timer_cb);
	atomic_init(&b->state, BREAKER_CLOSED);
	atomic_init(&b->opens_total, 0);
	atomic_init(&b->rejected_total, 0);
	atomic_init(&b->failures_total, 0);
}

bool
breaker_allow(struct breaker *b, uint64_t now_ms)
{
	switch (breaker_get_state(b)) {
	case BREAKER_CLOSED:
		return true;
	case BREAKER_OPEN:
		/* The clock can be ahead of the wheel's last run. */
		if (now_ms < b->reset_at)
			break;
		breaker_set_state(b, BREAKER_HALF_OPEN, now_ms);
		/* FALLTHROUGH */
	case BREAKER_HALF_OPEN:
		if (b->probe_in_flight)
			break;
		b->probe_in_flight = true;
		twheel_add(b->wheel, &b->reset_timer, now_ms + (uint64_t)b->cfg.reset_ms);
		return true;
	}
	atomic_fetch_add_explicit(&b->rejected_total, 1, memory_order_relaxed);
	return false;
}

void
breaker_success(struct breaker *b, uint64_t now_ms)
{
	if (breaker_get_state(b) == BREAKER_HALF_OPEN && b->probe_in_flight)
		breaker_set_state(b, BREAKER_CLOSED, now_ms);
}

void
breaker_failure(struct breaker *b, uint64_t now_ms)
{
	int n = b->cfg.failure_threshold;

	atomic_fetch_add_explicit(&b->failures_total, 1, memory_order_relaxed);
	switch (breaker_get_state(b)) {
	case BREAKER_CLOSED:
		b->fail_at[b->fail_next] = now_ms;
		b->fail_next = (b->fail_next + 1) % n;
		if (b->fail_count < n)
			b->fail_count++;
		/* Full ring: fail_next is the oldest of the last n failures. */
		if (b->fail_count == n && breaker_counts(b, b->fail_at[b->fail_next], now_ms))
			breaker_set_state(b, BREAKER_OPEN, now_ms);
		break;
	case BREAKER_HALF_OPEN:
		if (b->probe_in_flight)
			breaker_set_state(b, BREAKER_OPEN, now_ms);
		break;
	case BREAKER_OPEN:
		break;
	}
}

void
breaker_stop(struct breaker *b)
{
	twheel_cancel(&b->reset_timer);
}

int
breaker_window_failures(const struct breaker *b, uint64_t now_ms)
{
	int n = 0;

	for (int i = 0; i < b->fail_count; i++)
		n += breaker_counts(b, b->fail_at[i], now_ms);
	return n;
}

int
breaker_state_rank(enum breaker_state s)
{
	return s == BREAKER_OPEN ? 2 : s == BREAKER_HALF_OPEN ? 1 : 0;
}
