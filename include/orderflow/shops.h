/*
 * shops: a worker's copy of the TikTok shops and their app credentials.
 *
 * Webhooks must be verified before their body is parsed, so the secrets
 * have to be at hand without a database round trip.  Each worker keeps the
 * shops table in memory, reloads it every webhook.shop_refresh, and sooner
 * when a webhook names a shop it does not know (at most once a second).
 * Owned by one worker (through its webhook); called by webhook, proc and poll.
 */
#ifndef ORDERFLOW_SHOPS_H
#define ORDERFLOW_SHOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pg_pool;
struct worker;
struct worker_set;
struct shops;

/* One row of the shops table. */
struct shop {
	char	*id;		/* shops.id (uuid) */
	char	*tiktok_shop_id;
	char	*app_key;
	char	*app_secret;
	char	*status;	/* active, paused, deauthorized */
	char	*creator_id;	/* shops.creator_id (uuid) */
	char	*access_token;	/* "" when none */
	char	*shop_cipher;	/* "" when none */
	char	*auth_id;	/* tiktok_authorizations.id; "" = a token set by hand */
	long long token_version; /* the authorization's version the token is of */
	int64_t	token_expires;	/* Unix seconds; 0 when unknown */
	char	*auth_status;	/* active, refused, revoked; "" without an authorization */
};

/* One app whose secret signs webhooks; several shops may share it. */
struct shop_app {
	const char	*key;
	const char	*secret;
};

void shops_prepare(struct pg_pool *pg);
struct shops *shops_new(struct worker *w);
/* First load; later loads follow on the refresh timer. */
void shops_start(struct shops *s);
/* Stop reloading (shutdown). */
void shops_stop(struct shops *s);
void shops_free(struct shops *s);

/* False until the first load succeeded: nothing can be verified before. */
bool shops_loaded(const struct shops *s);
/* The shop, or NULL (which also asks for an early reload). */
const struct shop *shops_find(struct shops *s, const char *tiktok_shop_id);
/* By shops.id (uuid), or NULL; a linear scan (shops per process are few). */
const struct shop *shops_find_id(const struct shops *s, const char *id);
size_t shops_count(const struct shops *s);
const struct shop *shops_at(const struct shops *s, size_t i);
/* Note a status change made in the database before the next reload sees it. */
void shops_set_status(struct shops *s, const char *id, const char *status);
/* Install a renewed token in every shop of the authorization that has an older one. */
void shops_set_token(struct shops *s, const char *auth_id, const char *token, long long version,
    int64_t expires);
/* Load again now (a shop was connected, paused or renewed). */
void shops_reload(struct shops *s);
/* The same on every worker of the process (any thread). */
void shops_reload_all(struct worker_set *set);
/*
 * Load again, then fn(w, arg) on this worker once a load that started
 * after this call has ended (whether it succeeded or not).
 */
void shops_reload_then(struct shops *s, void (*fn)(struct worker *w, void *arg), void *arg);
size_t shops_app_count(const struct shops *s);
const struct shop_app *shops_app(const struct shops *s, size_t i);

#endif
