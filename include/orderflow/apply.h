/*
 * apply: TikTok order snapshots into the database.
 *
 * apply_normalize checks one order object of Get Order Detail or Search
 * Orders (every field bounded and typed), maps its status through the one
 * status table of the program, folds its unit line items by SKU, and
 * returns the flat record the apply statement reads.  apply_submit writes
 * a set of such records for one shop in ONE statement, hence one
 * transaction: upsert of orders and order_items, a status history row
 * (source tiktok_shop) when the status changed, an audit_log row, and the
 * given webhook events marked processed.  An order changes only when the
 * snapshot's update_time is newer than the stored one; an older snapshot
 * is written to audit_log only, an equal one changes nothing.
 *
 * Called by proc (webhook events) and poll (reconciliation) on their
 * worker.
 */
#ifndef ORDERFLOW_APPLY_H
#define ORDERFLOW_APPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pg_pool;
struct pg_batch;

/* Line items accepted per order (one per unit). */
#define APPLY_MAX_LINES 1000

/* The internal order_status for a TikTok status (webhook or API spelling), or NULL. */
const char *apply_map_status(const char *tiktok_status);

/*
 * The record for one TikTok order object, or NULL with the reason in err.
 * *id points into order (the TikTok order id) when it could be read.
 */
json_t *apply_normalize(json_t *order, const char **id, char *err, size_t errsz);

/* Figures of one applied set, from the statement's result. */
struct apply_result {
	int	applied;	/* orders inserted or changed */
	int	stale;		/* snapshots older than the stored order: audit only */
	int	unchanged;	/* same update_time as stored */
	/* "creator uuid tiktok_id" lines of the orders changed, or NULL; valid during the callback */
	const char *changed;
};

typedef void apply_cb(const char *error, const struct apply_result *r, void *arg);

void apply_prepare(struct pg_pool *pg);
/*
 * Apply records (a JSON array of apply_normalize results, unique by order
 * id) for shop_id, marking event_ids ("{1,2}" or "{}") processed in the
 * same transaction.  False when the pool refused (database down or busy):
 * cb is not called then.
 */
bool apply_submit(struct pg_pool *pg, const char *shop_id, json_t *records,
    const char *event_ids, apply_cb *cb, void *arg);

#endif
