/*
 * cache: the Redis copy of order documents (GET /api/orders/{id}).
 *
 * A document is stored under "of:order:<creator>:<id as asked>" (the
 * order's UUID or its TikTok id) for api.order_cache_ttl.  A change of
 * the order writes a tombstone over both of its keys instead of deleting
 * them, and a reader stores its copy only with NX and only if it saw no
 * key at all: a reader that read the database before the change can never
 * put its stale copy back after it.  Tombstones live a query timeout
 * longer than any read that started before them.
 *
 * Subscribes to the order change hook (service.h); called by the REST
 * order handlers.  Owned by nobody: every call uses the worker's Redis
 * connection and config.
 */
#ifndef ORDERFLOW_CACHE_H
#define ORDERFLOW_CACHE_H

#include <stdbool.h>
#include <stddef.h>

struct order_change;
struct worker;

/*
 * The cached document, or NULL: cb(body, len, fill, arg) once, possibly
 * before cache_get returns (cache off, Redis down).  fill: nothing was
 * there, not even a tombstone, so the caller may store what it reads.
 */
typedef void cache_cb(const char *body, size_t len, bool fill, void *arg);
void cache_get(struct worker *w, const char *creator, const char *id, cache_cb *cb, void *arg);
/* Store a document read after a cache_get that said fill. */
void cache_put(struct worker *w, const char *creator, const char *id, const char *body,
    size_t len);
/* Tombstones over both keys of an order (either id may be NULL). */
void cache_forget(struct worker *w, const char *creator, const char *uuid, const char *tiktok_id);
/* The change hook: a committed change forgets the order. */
void cache_order_changed(struct worker *w, const struct order_change *c);

#endif
