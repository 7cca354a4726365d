/*
 * apply: TikTok order snapshots into the database.
 *
 * apply_normalize checks one order object of Get Order Detail or Search
 * Orders (every field bounded and typed), maps its status through the
 * status table of order.c, folds its unit line items by SKU, and returns
 * the flat record that ostore_apply writes.
 *
 * Pure (no I/O), so the same code serves the daemon and the fuzz target.
 * Called by proc (webhook events) and poll (reconciliation).
 */
#ifndef ORDERFLOW_APPLY_H
#define ORDERFLOW_APPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


/* Line items accepted per order (one per unit). */
#define APPLY_MAX_LINES 1000

/*
 * The record for one TikTok order object, or NULL with the reason in err.
 * *id points into order (the TikTok order id) when it could be read.
 */
json_t *apply_normalize(json_t *order, const char **id, char *err, size_t errsz);

#endif
