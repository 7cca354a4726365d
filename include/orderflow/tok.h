/*
 * tok: the lifecycle of the shops' TikTok tokens, per worker.
 *
 * A shop connected through TikTok's authorization flow uses the tokens of
 * its authorization (table tiktok_authorizations).  Each authorization is
 * renewed by the worker that owns its id (worker_owner), on that worker's
 * timer wheel, before the access token expires (tiktok.token_refresh_margin,
 * or half the time left when that is shorter), with grant_type
 * refresh_token, tiktok.retry_* and the TikTok breaker.
 *
 * A renewal holds a lease on the row (refresh_owner, refresh_until) and
 * commits only over the version it started from, so two workers or two
 * daemons never renew the same authorization at once and never both
 * install a token: the one that loses the race adopts the winner's.
 * TikTok refusing the renewal (refresh token revoked or expired) marks the
 * authorization refused and pauses its shops, with the reason, in one
 * statement; their webhook events wait in the inbox until it is
 * reconnected.  A renewal that only failed (5xx, time-out, breaker open)
 * is tried again later and pauses nothing.
 *
 * tok_recover is how a call that TikTok answered "token invalid or
 * expired" gets a second chance: tt calls it, and tries the request once
 * more with the token it is given.  Owned by one worker; called by tt,
 * shops (after each load) and proc (the webhook about an authorization
 * about to expire).
 */
#ifndef ORDERFLOW_TOK_H
#define ORDERFLOW_TOK_H

#include <stdatomic.h>
#include <stdbool.h>

struct evbuffer;
struct pg_pool;
struct tok;
struct worker;
struct worker_set;

enum tok_outcome {
	TOK_RETRY_WITH,	/* try again with this token */
	TOK_REFUSED,	/* no token will do: the shop is (or will be) paused */
	TOK_LATER,	/* the token could not be renewed now: try later */
};

typedef void tok_recover_cb(void *arg, enum tok_outcome o, const char *token, const char *why);

void tok_prepare(struct pg_pool *pg);
struct tok *tok_new(struct worker *w);
/* Run every waiting callback with TOK_LATER and stop renewing. */
void tok_close(struct tok *k);
void tok_free(struct tok *k);

/*
 * TikTok refused `used` on a call for the shop (shops.id): cb runs once,
 * later or at once, with a newer token when there is one (renewed here or
 * by anyone else), else TOK_REFUSED or TOK_LATER.
 */
void tok_recover(struct tok *k, const char *shop_id, const char *used, tok_recover_cb *cb,
    void *arg);
/* The shops were reloaded: follow their authorizations' versions and expiries. */
void tok_shops_loaded(struct tok *k);
/*
 * Renew the shop's authorization now (TikTok said it is about to expire),
 * on the worker that owns it; false when the shop has none to renew.
 */
bool tok_renew_now(struct worker *w, const char *shop_id);

/* Prometheus lines: renewals by outcome. */
void tok_metrics(struct evbuffer *out, struct worker_set *s);

#endif
