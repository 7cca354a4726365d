/*
 * twheel: hierarchical timer wheel (see include/orderflow/twheel.h).
 *
 * The wheel's time w->now is the next millisecond not yet fired: every
 * timer in the levels or on the overflow list expires at or after it, and
 * timers added with an earlier expiry go on the overdue list.  A timer is
 * placed by comparing its expiry with w->now: level l is the highest
 * 6-bit group in which they differ, slot the expiry's own group at that
 * level.  So a level-0 slot holds timers with one exact expiry, and a slot
 * at level l >= 1 holds timers due inside a block of 64^l ms that starts
 * later than w->now.  The slot of w->now itself is empty on every level
 * above 0: when w->now enters a new block at level l, that block's slot is
 * cascaded (re-placed one level down or more) before anything else happens.
 * Time only ever moves to the next slot that holds something, so a big
 * jump costs one step per non-empty slot, not one per millisecond.
 *
 * Each level keeps a bitmap of its non-empty slots.  A cancelled timer
 * finds its wheel through t->wheel and clears the bit of a slot it leaves
 * empty, so the bitmaps are always exact.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "orderflow/twheel.h"
#include "orderflow/util.h"

#define TWHEEL_SLOTS	(1u << TWHEEL_LEVEL_BITS)
#define TWHEEL_MASK	((uint64_t)TWHEEL_SLOTS - 1)

struct twheel {
	uint64_t		now;		/* next ms to fire; all later timers are in the levels */
	size_t			count;		/* pending timers, every list included */
	bool			running;	/* inside twheel_run: refuse to nest */
	uint64_t		used[TWHEEL_LEVELS];	/* bit s set: slot s of that level is non-empty */
	struct twheel_link	slots[TWHEEL_LEVELS][TWHEEL_SLOTS];	/* list heads */
	struct twheel_link	overdue;	/* expiry before now: fire first in the next run */
	uint64_t		overdue_min;	/* no later than the earliest overdue expiry */
	struct twheel_link	far;		/* expiry past the current top-level span */
	twheel_arm_cb		*arm;		/* asks the owner's loop to call twheel_run, or NULL */
	void			*arm_arg;
	uint64_t		armed;		/* the expiry arm was last given, UINT64_MAX: none */
};

static void twheel_rearm(struct twheel *w);

/* List primitives: circular, with the head as a sentinel. */
static void
twheel_list_init(struct twheel_link *head)
{
	head->next = head->prev = head;
}

static bool
twheel_list_empty(const struct twheel_link *head)
{
	return head->next == head;
}

static void
twheel_list_append(struct twheel_link *head, struct twheel_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

/* Move every element of from to the (empty) list to, keeping the order. */
static void
twheel_list_take(struct twheel_link *from, struct twheel_link *to)
{
	if (twheel_list_empty(from)) {
		twheel_list_init(to);
		return;
	}
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	twheel_list_init(from);
}

/* The level a timer due at expire belongs on, TWHEEL_LEVELS for the overflow list. */
static unsigned
twheel_level(uint64_t now, uint64_t expire)
{
	uint64_t diff = now ^ expire;

	if (diff == 0)
		return 0;
	return (unsigned)(63 - __builtin_clzll(diff)) / TWHEEL_LEVEL_BITS;
}

/* Put a timer due at or after w->now on the list it belongs to. */
static void
twheel_place(struct twheel *w, struct twheel_timer *t)
{
	unsigned level = twheel_level(w->now, t->expire), slot;

	if (level >= TWHEEL_LEVELS) {
		twheel_list_append(&w->far, &t->link);
		return;
	}
	slot = (unsigned)(t->expire >> (level * TWHEEL_LEVEL_BITS)) & TWHEEL_MASK;
	twheel_list_append(&w->slots[level][slot], &t->link);
	w->used[level] |= (uint64_t)1 << slot;
}

/* Take t off its list; clear the slot's bit if it leaves the slot empty. */
static void
twheel_unlink(struct twheel *w, struct twheel_timer *t)
{
	struct twheel_link *prev = t->link.prev;
	uintptr_t off;

	prev->next = t->link.next;
	t->link.next->prev = prev;
	t->link.next = t->link.prev = NULL;
	t->wheel = NULL;
	w->count--;
	if (prev->next != prev)
		return;
	/* Only the head is left; find out whether it is a slot's. */
	off = (uintptr_t)prev - (uintptr_t)&w->slots[0][0];
	if (off < sizeof(w->slots)) {
		size_t idx = off / sizeof(struct twheel_link);

		w->used[idx / TWHEEL_SLOTS] &= ~((uint64_t)1 << (idx % TWHEEL_SLOTS));
	}
}

/* Re-place every timer of a list after w->now has moved past its block. */
static void
twheel_replace(struct twheel *w, struct twheel_link *head)
{
	struct twheel_link list;

	twheel_list_take(head, &list);
	while (!twheel_list_empty(&list)) {
		struct twheel_link *l = list.next;

		list.next = l->next;
		l->next->prev = &list;
		twheel_place(w, container_of(l, struct twheel_timer, link));
	}
}

/*
 * Set the wheel's time forward to "to", cascading the slot of every level
 * whose block changes, top down.  The caller guarantees nothing is due
 * before "to" except what these cascades re-place.
 */
static void
twheel_move(struct twheel *w, uint64_t to)
{
	uint64_t from = w->now;

	w->now = to;
	if (from >> TWHEEL_SPAN_BITS != to >> TWHEEL_SPAN_BITS)
		twheel_replace(w, &w->far);
	for (unsigned level = TWHEEL_LEVELS - 1; level >= 1; level--) {
		unsigned shift = level * TWHEEL_LEVEL_BITS, slot;

		if (from >> shift == to >> shift)
			continue;
		slot = (unsigned)(to >> shift) & TWHEEL_MASK;
		if (w->used[level] & ((uint64_t)1 << slot)) {
			w->used[level] &= ~((uint64_t)1 << slot);
			twheel_replace(w, &w->slots[level][slot]);
		}
	}
}

/*
 * Find the first non-empty slot at or after w->now: its level (TWHEEL_LEVELS
 * for the overflow list), slot, and the earliest time it can hold, which is
 * exact on level 0.  False when no timer is in the levels or the overflow.
 */
static bool
twheel_find(const struct twheel *w, unsigned *levelp, unsigned *slotp, uint64_t *atp)
{
	for (unsigned level = 0; level < TWHEEL_LEVELS; level++) {
		unsigned shift = level * TWHEEL_LEVEL_BITS;
		unsigned pos = (unsigned)(w->now >> shift) & TWHEEL_MASK;
		uint64_t bits = w->used[level] & (~(uint64_t)0 << pos);
		uint64_t block;

		if (bits == 0)
			continue;
		*levelp = level;
		*slotp = (unsigned)__builtin_ctzll(bits);
		block = ((uint64_t)1 << (shift + TWHEEL_LEVEL_BITS)) - 1;
		*atp = (w->now & ~block) | ((uint64_t)*slotp << shift);
		return true;
	}
	if (twheel_list_empty(&w->far))
		return false;
	/* Non-empty only when a later span exists, so this cannot overflow. */
	*levelp = TWHEEL_LEVELS;
	*slotp = 0;
	*atp = ((w->now >> TWHEEL_SPAN_BITS) + 1) << TWHEEL_SPAN_BITS;
	return true;
}

/* Fire every timer of list, first to last; callbacks may change the list. */
static size_t
twheel_fire(struct twheel *w, struct twheel_link *list)
{
	size_t n = 0;

	while (!twheel_list_empty(list)) {
		struct twheel_timer *t = container_of(list->next, struct twheel_timer, link);

		twheel_unlink(w, t);
		t->cb(t);
		n++;
	}
	return n;
}

struct twheel *
twheel_new(uint64_t now_ms)
{
	struct twheel *w = xcalloc(1, sizeof(*w));

	w->now = now_ms;
	for (unsigned level = 0; level < TWHEEL_LEVELS; level++)
		for (unsigned slot = 0; slot < TWHEEL_SLOTS; slot++)
			twheel_list_init(&w->slots[level][slot]);
	twheel_list_init(&w->overdue);
	twheel_list_init(&w->far);
	w->overdue_min = UINT64_MAX;
	w->armed = UINT64_MAX;
	return w;
}

void
twheel_set_arm(struct twheel *w, twheel_arm_cb *cb, void *arg)
{
	w->arm = cb;
	w->arm_arg = arg;
	w->armed = UINT64_MAX;
	twheel_rearm(w);
}

/* Ask for a run at the earliest expiry when it is earlier than the one asked for. */
static void
twheel_rearm(struct twheel *w)
{
	uint64_t next;

	if (w->arm == NULL || w->running)
		return;
	next = twheel_next_expiry(w);
	if (next == UINT64_MAX || next >= w->armed)
		return;
	w->armed = next;
	w->arm(next, w->arm_arg);
}

/* Detach every timer of a list, leaving each idle. */
static void
twheel_free_list(struct twheel *w, struct twheel_link *head)
{
	while (!twheel_list_empty(head))
		twheel_unlink(w, container_of(head->next, struct twheel_timer, link));
}

void
twheel_free(struct twheel *w)
{
	if (w == NULL)
		return;
	for (unsigned level = 0; level < TWHEEL_LEVELS; level++)
		for (unsigned slot = 0; slot < TWHEEL_SLOTS; slot++)
			twheel_free_list(w, &w->slots[level][slot]);
	twheel_free_list(w, &w->overdue);
	twheel_free_list(w, &w->far);
	free(w);
}

void
twheel_timer_init(struct twheel_timer *t, twheel_cb *cb)
{
	t->link.next = t->link.prev = NULL;
	t->expire = 0;
	t->cb = cb;
	t->wheel = NULL;
}

void
twheel_add(struct twheel *w, struct twheel_timer *t, uint64_t expire_ms)
{
	twheel_cancel(t);
	t->expire = expire_ms;
	t->wheel = w;
	w->count++;
	if (expire_ms < w->now) {
		twheel_list_append(&w->overdue, &t->link);
		if (expire_ms < w->overdue_min)
			w->overdue_min = expire_ms;
	} else
		twheel_place(w, t);
	twheel_rearm(w);
}

void
twheel_cancel(struct twheel_timer *t)
{
	if (t->wheel != NULL)
		twheel_unlink(t->wheel, t);
}

bool
twheel_pending(const struct twheel_timer *t)
{
	return t->wheel != NULL;
}

size_t
twheel_run(struct twheel *w, uint64_t now_ms)
{
	struct twheel_link list;
	unsigned level, slot;
	uint64_t at;
	size_t n = 0;

	if (w->running)
		return 0;
	w->running = true;
	/* Whatever was asked for has come: the next arm is asked afresh. */
	w->armed = UINT64_MAX;
	if (now_ms == UINT64_MAX)
		now_ms = UINT64_MAX - 1;

	/* Overdue timers first; those they add for the past wait for the next run. */
	twheel_list_take(&w->overdue, &list);
	w->overdue_min = UINT64_MAX;
	n += twheel_fire(w, &list);

	while (w->now <= now_ms) {
		if (!twheel_find(w, &level, &slot, &at) || at > now_ms) {
			twheel_move(w, now_ms + 1);
			break;
		}
		if (level > 0) {
			/* Enter the block: twheel_move cascades it. */
			twheel_move(w, at);
			continue;
		}
		/*
		 * Take the slot, then step past its time before firing, so that
		 * a timer added for this time or earlier goes to the overdue list.
		 */
		twheel_list_take(&w->slots[0][slot], &list);
		w->used[0] &= ~((uint64_t)1 << slot);
		twheel_move(w, at + 1);
		n += twheel_fire(w, &list);
	}
	w->running = false;
	twheel_rearm(w);
	return n;
}

uint64_t
twheel_next_expiry(const struct twheel *w)
{
	unsigned level, slot;
	uint64_t at;

	if (!twheel_list_empty(&w->overdue))
		return w->overdue_min;
	if (!twheel_find(w, &level, &slot, &at))
		return UINT64_MAX;
	return at;
}

size_t
twheel_count(const struct twheel *w)
{
	return w->count;
}
