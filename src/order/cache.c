/*
 * cache: order documents in Redis, with tombstones.
 */
#include "config.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/cache.h"
#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/ostore.h"
#include "orderflow/rds.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

#define CACHE_TOMBSTONE "-"
#define CACHE_KEY_MAX 160

static void
cache_key(char *key, size_t size, const char *creator, const char *id)
{
	snprintf(key, size, "of:order:%s:%s", creator, id);
}

static void
cache_on_write(struct redisReply *reply, void *arg)
{
	(void)reply;
	(void)arg;
}

void
cache_forget(struct worker *w, const char *creator, const char *uuid, const char *tiktok_id)
{
	const char *ids[2] = { uuid, tiktok_id };
	long long ms = w->cfg->postgres.query_timeout + 1000;
	char key[CACHE_KEY_MAX];

	if (w->cfg->api.order_cache_ttl == 0)
		return;
	for (int i = 0; i < 2; i++) {
		if (ids[i] == NULL || ids[i][0] == '\0')
			continue;
		cache_key(key, sizeof(key), creator, ids[i]);
		if (!rds_command(w->rds, cache_on_write, NULL, "SET %s %s PX %lld", key,
		    CACHE_TOMBSTONE, ms))
			log_warn("order cache not invalidated: Redis unavailable", "key=%s", key);
	}
}

void
cache_order_changed(struct worker *w, const struct order_change *c)
{
	cache_forget(w, c->creator, c->id, c->tiktok_id);
}

/* A GET in flight. */
struct cache_read {
	cache_cb	*cb;
	void		*arg;
};

static void
cache_on_read(struct redisReply *reply, void *arg)
{
	struct cache_read *r = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING &&
	    strcmp(reply->str, CACHE_TOMBSTONE) != 0)
		r->cb(reply->str, reply->len, false, r->arg);
	else
		r->cb(NULL, 0, reply != NULL && reply->type == REDIS_REPLY_NIL, r->arg);
	free(r);
}

void
cache_get(struct worker *w, const char *creator, const char *id, cache_cb *cb, void *arg)
{
	struct cache_read *r;
	char key[CACHE_KEY_MAX];

	if (w->cfg->api.order_cache_ttl == 0) {
		cb(NULL, 0, false, arg);
		return;
	}
	r = xmalloc(sizeof(*r));
	*r = (struct cache_read){ cb, arg };
	cache_key(key, sizeof(key), creator, id);
	if (!rds_command(w->rds, cache_on_read, r, "GET %s", key)) {
		free(r);
		cb(NULL, 0, false, arg);
	}
}

void
cache_put(struct worker *w, const char *creator, const char *id, const char *body, size_t len)
{
	char key[CACHE_KEY_MAX];

	cache_key(key, sizeof(key), creator, id);
	if (!rds_command(w->rds, cache_on_write, NULL, "SET %s %b PX %lld NX", key, body, len,
	    (long long)w->cfg->api.order_cache_ttl))
		log_debug("order not cached: Redis unavailable", "key=%s", key);
}
