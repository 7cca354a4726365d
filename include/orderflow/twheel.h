/*
 * twheel: a hierarchical timer wheel with 1 ms resolution, one per worker.
 *
 * Timers are embedded in their owners (a breaker, a retry, a workflow wait)
 * and reached from the callback with container_of, as in h2o's timerwheel.h.
 * Adding and cancelling are O(1); a timer that is not pending costs nothing.
 * The owner's loop keeps ONE timer of its own for the wheel: the wheel
 * calls the arm callback (twheel_set_arm) whenever its earliest expiry
 * moves earlier than the one it last asked for (an add, the end of a run),
 * and the loop calls twheel_run() when that time comes.  So no caller of
 * twheel_add has to remember to re-arm anything; a cancel never asks (a
 * wake-up with nothing to fire is harmless).
 *
 * Layout: TWHEEL_LEVELS levels of 64 slots.  A timer sits on the lowest
 * level whose 64 slots still separate its expiry from the wheel's time; as
 * time reaches a higher-level slot, that slot is cascaded into the levels
 * below, so each timer moves at most TWHEEL_LEVELS times.  Timers beyond the
 * top level's span (2^36 ms, about 795 days) wait on an overflow list that
 * is re-checked whenever the wheel's time enters a new span.
 *
 * Order: twheel_run fires every timer whose expiry is <= now_ms, earliest
 * expiry first; timers with the same expiry fire in the order they were
 * (last) added.  An expiry that is already behind the wheel (at or before
 * the now_ms of the last run) counts as "overdue": such timers fire first
 * in the next run, in the order they were added.
 *
 * Callbacks may add, re-add and cancel any timer, themselves included, and
 * may free the owner of the timer that fired.  A timer added from a
 * callback fires in the same run when its expiry is later than the time
 * being fired and <= now_ms, and in the next run when its expiry is at or
 * before the time being fired (so a callback that re-adds itself for "now"
 * runs once per twheel_run, never in a loop).  Nothing is ever lost.
 *
 * Owned and called by one thread only; nothing here locks.
 */
#ifndef ORDERFLOW_TWHEEL_H
#define ORDERFLOW_TWHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TWHEEL_LEVEL_BITS	6	/* each level has 1 << 6 = 64 slots */
#define TWHEEL_LEVELS		6	/* levels 0..5: spans 2^6, 2^12, ... 2^36 ms */
#define TWHEEL_SPAN_BITS	(TWHEEL_LEVEL_BITS * TWHEEL_LEVELS)	/* 36 */

struct twheel;
struct twheel_timer;

/* Called once when the timer fires; it is no longer pending by then. */
typedef void twheel_cb(struct twheel_timer *t);
/* Run the wheel at expire_ms (absolute, the wheel's clock) or earlier; replaces the last request. */
typedef void twheel_arm_cb(uint64_t expire_ms, void *arg);

/* Links of the circular list a pending timer is on. */
struct twheel_link {
	struct twheel_link	*next;	/* next in the list; NULL when not pending */
	struct twheel_link	*prev;	/* previous in the list; NULL when not pending */
};

/* One timer; embed it in its owner and initialise it with twheel_timer_init. */
struct twheel_timer {
	struct twheel_link	link;	/* position in a slot or list */
	uint64_t		expire;	/* absolute expiry in ms, as last given to twheel_add */
	twheel_cb		*cb;	/* what to call when it fires */
	struct twheel		*wheel;	/* the wheel it is pending on, NULL when idle */
};

/* A wheel whose time starts at now_ms (the worker's monotonic clock, ms). */
struct twheel *twheel_new(uint64_t now_ms);
/*
 * The owner's loop timer: cb(expire_ms, arg) is called at once when timers
 * are pending, then as described above.  Never from inside twheel_run's
 * callbacks (the end of the run asks once for all).
 */
void twheel_set_arm(struct twheel *w, twheel_arm_cb *cb, void *arg);
/* Free the wheel (not from its callbacks); pending timers become idle, never fire. */
void twheel_free(struct twheel *w);

/* Make t idle with callback cb; do this once before any other call on t. */
void twheel_timer_init(struct twheel_timer *t, twheel_cb *cb);
/* Arm t to fire at expire_ms (absolute); re-adding a pending timer moves it. */
void twheel_add(struct twheel *w, struct twheel_timer *t, uint64_t expire_ms);
/* Disarm t in O(1); a no-op when it is not pending (never added, fired, cancelled). */
void twheel_cancel(struct twheel_timer *t);
/* True from twheel_add until the timer fires or is cancelled. */
bool twheel_pending(const struct twheel_timer *t);

/*
 * Fire every timer with expiry <= now_ms (overdue ones first), in expiry
 * order, ties in insertion order; return how many fired.  now_ms earlier
 * than the last run only fires overdue timers; now_ms is capped at
 * UINT64_MAX - 1, so a timer set for UINT64_MAX never fires.  Must not be
 * called from one of this wheel's callbacks (it then returns 0).
 */
size_t twheel_run(struct twheel *w, uint64_t now_ms);

/*
 * When the worker should call twheel_run next: a time no later than the
 * earliest pending expiry, UINT64_MAX when nothing is pending.  It is exact
 * when the earliest timer falls in the current 64 ms block; otherwise it
 * is the start of the slot holding it, so the worker may wake early at most
 * once per level while the timer cascades down.  Overdue timers give a
 * time in the past: run at once.
 */
uint64_t twheel_next_expiry(const struct twheel *w);

/* Number of pending timers. */
size_t twheel_count(const struct twheel *w);

#endif
