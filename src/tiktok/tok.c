/*
 * tok: renewing the shops' TikTok tokens before they expire.
 */
#include "config.h"

#include <event2/buffer.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "orderflow/backoff.h"
#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/shops.h"
#include "orderflow/tok.h"
#include "orderflow/tt.h"
#include "orderflow/ttauth.h"
#include "orderflow/ttsign.h"
#include "orderflow/twheel.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"

#define TOK_REFRESH_PATH "/api/v2/token/refresh"
/* While another process holds the lease, look again this often. */
#define TOK_POLL_MS 500

enum tok_out { TOK_OUT_RENEWED, TOK_OUT_ADOPTED, TOK_OUT_REFUSED, TOK_OUT_FAILED, TOK_OUT_MAX };

static const char *const tok_out_names[TOK_OUT_MAX] = { "renewed", "adopted", "refused", "failed" };

/* One caller waiting for a usable token. */
struct tok_waiter {
	TAILQ_ENTRY(tok_waiter) entry;
	tok_recover_cb	*cb;
	void		*arg;
};
TAILQ_HEAD(tok_waiters, tok_waiter);

/* One authorization this worker has seen in its shops. */
struct tok_auth {
	LIST_ENTRY(tok_auth) entry;
	struct tok	*k;
	char		id[37];
	long long	version;	/* of the token this worker uses */
	int64_t		expires;	/* Unix seconds */
	bool		active;		/* status 'active' at the last load */
	bool		busy;		/* a renewal is under way */
	bool		seen;		/* still named by the last load */
	long long	from;		/* the version this renewal started from (loads may move version) */
	int		attempt;	/* TikTok calls of this renewal */
	int64_t		poll_until;	/* mono ms: stop waiting for another holder */
	struct tok_waiters waiters;
	struct twheel_timer due;	/* the scheduled renewal (owner only) */
	struct twheel_timer retry;	/* the next step of a renewal under way */
	void		(*next)(struct tok_auth *a);
	/* What the claim read, for the call. */
	char		*refresh_token;
	char		*app_key;
	char		*app_secret;
	/* What TikTok granted, until it is committed. */
	char		*grant[4];	/* access token, its expiry, refresh token, its expiry */
	int		save_attempt;
};

struct tok {
	struct worker	*w;
	LIST_HEAD(, tok_auth) auths;
	char		owner[160];	/* lease owner: instance and worker */
	bool		closing;
	atomic_ullong	outcomes[TOK_OUT_MAX];
};

/*
 * Claim the renewal: the row must still be at our version, active, and
 * its lease free (or ours).  Whatever happens, the row as it was comes
 * back, so a loser learns the winner's token in the same round trip.
 */
static const char tok_claim_sql[] =
    "WITH c AS (UPDATE tiktok_authorizations SET refresh_owner = $2,"
    "  refresh_until = now() + $3::bigint * interval '1 millisecond'"
    "  WHERE id = $1::uuid AND version = $4::bigint AND status = 'active'"
    "  AND (refresh_until IS NULL OR refresh_until < now() OR refresh_owner = $2) RETURNING id)"
    " SELECT (SELECT count(*) FROM c) = 1, a.version, a.status, a.access_token,"
    " extract(epoch FROM a.access_token_expires_at)::bigint, a.refresh_token,"
    " extract(epoch FROM a.refresh_token_expires_at)::bigint, a.app_key,"
    " (SELECT s.app_secret FROM shops s WHERE s.authorization_id = a.id ORDER BY s.id LIMIT 1),"
    " coalesce(a.error, '')"
    " FROM tiktok_authorizations a WHERE a.id = $1::uuid";
static const char tok_save_sql[] =
    "WITH a AS (UPDATE tiktok_authorizations SET access_token = $3,"
    "  access_token_expires_at = to_timestamp($4::bigint), refresh_token = $5,"
    "  refresh_token_expires_at = to_timestamp($6::bigint), version = version + 1,"
    "  refreshed_at = now(), error = NULL, refresh_owner = NULL, refresh_until = NULL"
    "  WHERE id = $1::uuid AND refresh_owner = $2 AND version = $7::bigint"
    "  RETURNING id, creator_id, version, access_token_expires_at),"
    " l AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT creator_id, 'orderflowd', 'authorization.renewed', 'tiktok_authorization', id::text,"
    "  jsonb_build_object('version', version, 'expires_at', access_token_expires_at) FROM a)"
    " SELECT version FROM a";
/* TikTok will not renew it: no shop of it can be called until it is reconnected. */
static const char tok_refuse_sql[] =
    "WITH a AS (UPDATE tiktok_authorizations SET status = 'refused', error = $3,"
    "  refresh_owner = NULL, refresh_until = NULL"
    "  WHERE id = $1::uuid AND version = $2::bigint AND status = 'active' RETURNING id),"
    " s AS (UPDATE shops SET status = 'paused', paused_reason = $4"
    "  WHERE authorization_id IN (SELECT id FROM a) AND status = 'active'"
    "  RETURNING id, creator_id),"
    " l AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT creator_id, 'orderflowd', 'shop.paused', 'shop', id::text, '{\"status\":\"active\"}',"
    "  jsonb_build_object('status', 'paused', 'reason', $4::text) FROM s)"
    " SELECT count(*) FROM a";
static const char tok_release_sql[] =
    "UPDATE tiktok_authorizations SET refresh_owner = NULL, refresh_until = NULL, error = $3"
    " WHERE id = $1::uuid AND refresh_owner = $2";

void
tok_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "tok_claim", tok_claim_sql);
	pg_pool_prepare(pg, "tok_save", tok_save_sql);
	pg_pool_prepare(pg, "tok_refuse", tok_refuse_sql);
	pg_pool_prepare(pg, "tok_release", tok_release_sql);
}

static struct shops *
tok_shops(struct tok *k)
{
	return webhook_shops(k->w->svc[SERVICE_WEBHOOK]);
}

static struct tok_auth *
tok_find(struct tok *k, const char *id)
{
	struct tok_auth *a;

	LIST_FOREACH(a, &k->auths, entry)
		if (strcmp(a->id, id) == 0)
			return a;
	return NULL;
}

/* Tell every waiter, then forget them. */
static void
tok_wake(struct tok_auth *a, enum tok_outcome o, const char *token, const char *why)
{
	struct tok_waiters list = TAILQ_HEAD_INITIALIZER(list);
	struct tok_waiter *wt;

	TAILQ_CONCAT(&list, &a->waiters, entry);
	while ((wt = TAILQ_FIRST(&list)) != NULL) {
		TAILQ_REMOVE(&list, wt, entry);
		wt->cb(wt->arg, o, token, why);
		free(wt);
	}
}

/* When to renew: margin before expiry, or half the time left when that is shorter. */
static void
tok_schedule(struct tok_auth *a)
{
	struct tok *k = a->k;
	int64_t left_ms = (a->expires - (int64_t)time(NULL)) * 1000, margin;

	twheel_cancel(&a->due);
	if (k->closing || !a->active || a->busy || a->expires <= 0 ||
	    worker_owner(k->w->set, a->id) != k->w)
		return;
	margin = k->w->cfg->tiktok.token_refresh_margin;
	if (margin > left_ms / 2)
		margin = left_ms / 2;
	twheel_add(k->w->wheel, &a->due, worker_now_ms() + (uint64_t)(left_ms > margin ?
	    left_ms - margin : 0));
}

static void
tok_forget(struct tok_auth *a)
{
	free(a->refresh_token);
	free(a->app_key);
	free(a->app_secret);
	a->refresh_token = a->app_key = a->app_secret = NULL;
	for (size_t i = 0; i < NELEM(a->grant); i++) {
		free(a->grant[i]);
		a->grant[i] = NULL;
	}
}

static void
tok_finish(struct tok_auth *a, enum tok_outcome o, const char *token, const char *why)
{
	a->busy = false;
	a->attempt = 0;
	tok_forget(a);
	if (o == TOK_REFUSED)
		a->active = false;
	tok_wake(a, o, token, why);
	tok_schedule(a);
}

static void
tok_exec(struct tok *k, const char *stmt, int n, const char *const *params)
{
	struct pg_batch *b = pg_batch_new(NULL, NULL);

	pg_batch_add(b, true, stmt, n, params);
	if (pg_submit(k->w->pg, b) != PG_OK)
		log_warn("cannot record a token renewal", "statement=%s", stmt);
}

static void tok_claim(struct tok_auth *a);
static void tok_call(struct tok_auth *a);
static void tok_save(struct tok_auth *a);

static void
tok_on_retry(struct twheel_timer *t)
{
	struct tok_auth *a = container_of(t, struct tok_auth, retry);

	a->next(a);
}

static void
tok_later(struct tok_auth *a, int64_t ms, void (*next)(struct tok_auth *))
{
	a->next = next;
	twheel_add(a->k->w->wheel, &a->retry, worker_now_ms() + (uint64_t)ms);
}

/* A newer token than ours exists: use it everywhere on this worker. */
static void
tok_adopt(struct tok_auth *a, const char *token, long long version, int64_t expires)
{
	struct tok *k = a->k;

	a->version = version;
	a->expires = expires;
	shops_set_token(tok_shops(k), a->id, token, version, expires);
	shops_reload_all(k->w->set);
}

struct tok_refusal {
	struct tok_auth	*a;
	char		reason[400];
};

/* The shops of the authorization stop here and the waiters hear it. */
static void
tok_refused_done(struct tok_refusal *x)
{
	struct tok_auth *a = x->a;
	struct tok *k = a->k;
	struct shops *sh = tok_shops(k);

	for (size_t i = 0; i < shops_count(sh); i++)
		if (strcmp(shops_at(sh, i)->auth_id, a->id) == 0)
			shops_set_status(sh, shops_at(sh, i)->id, "paused");
	shops_reload_all(k->w->set);
	util_count(&k->outcomes[TOK_OUT_REFUSED], 1);
	tok_finish(a, TOK_REFUSED, NULL, x->reason);
	free(x);
}

static void
tok_on_refused(struct pg_batch *b, void *arg)
{
	struct tok_refusal *x = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) == NULL && r != NULL && PQntuples(r) == 1 &&
	    strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
		/* Renewed meanwhile (our lease ran out, or a reconnect): adopt that. */
		tok_later(x->a, 0, tok_claim);
		free(x);
		return;
	}
	tok_refused_done(x);
}

/* TikTok refused: pause the authorization's shops (in memory too, once committed). */
static void
tok_refused(struct tok_auth *a, const char *error)
{
	struct tok *k = a->k;
	struct tok_refusal *x = xcalloc(1, sizeof(*x));
	struct pg_batch *b = pg_batch_new(tok_on_refused, x);
	char ver[24];

	x->a = a;
	snprintf(ver, sizeof(ver), "%lld", a->from);
	snprintf(x->reason, sizeof(x->reason), "TikTok refused to renew the shop's authorization "
	    "(%s): connect the shop again", error);
	log_warn("TikTok refused a token renewal", "authorization=%s error=%s", a->id,
	    log_quote(error));
	pg_batch_add(b, true, "tok_refuse", 4, (const char *[]){ a->id, ver, error, x->reason });
	/* Database away: the shops are paused here at least; the next load tells the truth. */
	if (pg_submit(k->w->pg, b) != PG_OK)
		tok_refused_done(x);
}

/* The renewal could not be done now; nothing is paused. */
static void
tok_failed(struct tok_auth *a, const char *error)
{
	struct tok *k = a->k;
	char why[300];

	snprintf(why, sizeof(why), "the shop's token could not be renewed: %s", error);
	log_warn("token renewal failed", "authorization=%s attempts=%d error=%s", a->id, a->attempt,
	    log_quote(error));
	tok_exec(k, "tok_release", 3, (const char *[]){ a->id, k->owner, why });
	util_count(&k->outcomes[TOK_OUT_FAILED], 1);
	tok_finish(a, TOK_LATER, NULL, why);
	/* Not due again by the clock (the token may not expire soon): try after retry_max. */
	if (!k->closing && a->active && worker_owner(k->w->set, a->id) == k->w) {
		twheel_cancel(&a->due);
		twheel_add(k->w->wheel, &a->due, worker_now_ms() +
		    (uint64_t)k->w->cfg->tiktok.retry_max);
	}
}

static void
tok_on_saved(struct pg_batch *b, void *arg)
{
	struct tok_auth *a = arg;
	PGresult *r = pg_batch_result(b, 0);
	char *token;

	if (pg_batch_error(b) != NULL || r == NULL) {
		/*
		 * TikTok may have retired the refresh token we used: what it
		 * granted must not be lost, so the same commit is tried again.
		 */
		if (++a->save_attempt <= 2 * (int)a->k->w->cfg->tiktok.retry_attempts) {
			tok_later(a, 1000, tok_save);
			return;
		}
		log_error("a renewed token could not be stored", "authorization=%s error=%s", a->id,
		    log_quote(pg_batch_error(b)));
		tok_failed(a, "the renewed token could not be stored");
		return;
	}
	if (PQntuples(r) != 1) {
		/* Our lease ran out and someone else renewed: read what won. */
		tok_later(a, 0, tok_claim);
		return;
	}
	a->version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	a->expires = strtoll(a->grant[1], NULL, 10);
	shops_set_token(tok_shops(a->k), a->id, a->grant[0], a->version, a->expires);
	shops_reload_all(a->k->w->set);
	util_count(&a->k->outcomes[TOK_OUT_RENEWED], 1);
	log_info("token renewed", "authorization=%s version=%lld", a->id, a->version);
	token = xstrdup(a->grant[0]);
	tok_finish(a, TOK_RETRY_WITH, token, "");
	free(token);
}

static void
tok_save(struct tok_auth *a)
{
	struct tok *k = a->k;
	struct pg_batch *b = pg_batch_new(tok_on_saved, a);
	char ver[24];

	snprintf(ver, sizeof(ver), "%lld", a->from);
	pg_batch_add(b, true, "tok_save", 7, (const char *[]){ a->id, k->owner, a->grant[0],
	    a->grant[1], a->grant[2], a->grant[3], ver });
	if (pg_submit(k->w->pg, b) == PG_OK)
		return;
	if (++a->save_attempt <= 2 * (int)k->w->cfg->tiktok.retry_attempts)
		tok_later(a, 1000, tok_save);
	else
		tok_failed(a, "the renewed token could not be stored");
}

static void
tok_on_refresh(const struct tt_result *r, void *arg)
{
	struct tok_auth *a = arg;
	struct tok *k = a->k;
	struct ttauth_grant g;
	const char *why = NULL;
	const struct backoff_policy pol = {
		(int)k->w->cfg->tiktok.retry_attempts, k->w->cfg->tiktok.retry_base,
		k->w->cfg->tiktok.retry_max, 2.0,
	};

	if (k->closing) {
		tok_finish(a, TOK_LATER, NULL, "shutting down");
		return;
	}
	if (r->status == TT_FATAL || r->status == TT_TOKEN) {
		tok_refused(a, r->error);
		return;
	}
	if (r->status != TT_OK || !ttauth_grant_parse(r->data, (int64_t)time(NULL), false, &g, &why)) {
		const char *err = r->status == TT_OK ? why : r->error;
		int64_t delay = backoff_delay(&pol, a->attempt, util_random());

		if (a->attempt >= pol.max_attempts) {
			tok_failed(a, err);
			return;
		}
		if (r->retry_after_ms > delay)
			delay = r->retry_after_ms < pol.max_ms ? r->retry_after_ms : pol.max_ms;
		log_info("token renewal will be retried", "authorization=%s attempt=%d delay_ms=%lld "
		    "error=%s", a->id, a->attempt, (long long)delay, log_quote(err));
		/* The claim again, so the lease is extended and a winner elsewhere is seen. */
		tok_later(a, delay, tok_claim);
		return;
	}
	tok_forget(a);
	a->grant[0] = xstrdup(g.access_token);
	a->grant[1] = xasprintf("%lld", (long long)g.access_expires);
	a->grant[2] = xstrdup(g.refresh_token);
	a->grant[3] = xasprintf("%lld", (long long)g.refresh_expires);
	a->save_attempt = 0;
	tok_save(a);
}

/* The refresh call itself (through tt: its breaker, its auth-host pool). */
static void
tok_call(struct tok_auth *a)
{
	struct tt *tt = a->k->w->svc[SERVICE_TT];
	const struct ttsign_param q[] = {
		{ "app_key", a->app_key }, { "app_secret", a->app_secret },
		{ "refresh_token", a->refresh_token }, { "grant_type", "refresh_token" },
	};
	enum tt_status st;

	a->attempt++;
	st = tt_auth_get(tt, TOK_REFRESH_PATH, q, NELEM(q), tok_on_refresh, a);
	if (st == TT_OK)
		return;
	/* Breaker open or queue full: no call was made, so no attempt is used. */
	a->attempt--;
	/* Through the claim again: the wait may outlast the lease, and a winner elsewhere is seen. */
	tok_later(a, st == TT_OPEN ? tt_breaker_wait_ms(tt) + 100 : 1000, tok_claim);
}

static void
tok_on_claim(struct pg_batch *b, void *arg)
{
	struct tok_auth *a = arg;
	struct tok *k = a->k;
	PGresult *r = pg_batch_result(b, 0);
	long long version;

	if (k->closing) {
		tok_finish(a, TOK_LATER, NULL, "shutting down");
		return;
	}
	if (pg_batch_error(b) != NULL || r == NULL || PQnfields(r) != 10) {
		if (++a->attempt > (int)k->w->cfg->tiktok.retry_attempts)
			tok_failed(a, pg_batch_error(b) ? pg_batch_error(b) : "bad result");
		else
			tok_later(a, 1000, tok_claim);
		return;
	}
	if (PQntuples(r) != 1) {
		tok_finish(a, TOK_REFUSED, NULL, "the shop's authorization was removed");
		return;
	}
	version = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	if (version > a->from && strcmp(PQgetvalue(r, 0, 2), "active") == 0) {
		tok_adopt(a, PQgetvalue(r, 0, 3), version, strtoll(PQgetvalue(r, 0, 4), NULL, 10));
		util_count(&k->outcomes[TOK_OUT_ADOPTED], 1);
		tok_finish(a, TOK_RETRY_WITH, PQgetvalue(r, 0, 3), "");
		return;
	}
	if (strcmp(PQgetvalue(r, 0, 2), "active") != 0) {
		tok_finish(a, TOK_REFUSED, NULL, PQgetvalue(r, 0, 9)[0] != '\0' ? PQgetvalue(r, 0, 9) :
		    "the shop's authorization is no longer valid: connect the shop again");
		return;
	}
	if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		/* Someone else holds the lease: wait for its outcome, within reason. */
		if (a->poll_until == 0)
			a->poll_until = (int64_t)worker_now_ms() + k->w->cfg->tiktok.token_lease + 1000;
		if ((int64_t)worker_now_ms() > a->poll_until)
			tok_finish(a, TOK_LATER, NULL, "another process is renewing the token");
		else
			tok_later(a, TOK_POLL_MS, tok_claim);
		return;
	}
	if (strtoll(PQgetvalue(r, 0, 6), NULL, 10) <= (long long)time(NULL) ||
	    PQgetisnull(r, 0, 8)) {
		tok_refused(a, PQgetisnull(r, 0, 8) ? "no shop holds the app secret" :
		    "the refresh token has expired");
		return;
	}
	free(a->refresh_token);
	free(a->app_key);
	free(a->app_secret);
	a->refresh_token = xstrdup(PQgetvalue(r, 0, 5));
	a->app_key = xstrdup(PQgetvalue(r, 0, 7));
	a->app_secret = xstrdup(PQgetvalue(r, 0, 8));
	tok_call(a);
}

static void
tok_claim(struct tok_auth *a)
{
	struct tok *k = a->k;
	struct pg_batch *b;
	char lease[24], ver[24];

	snprintf(lease, sizeof(lease), "%lld", (long long)k->w->cfg->tiktok.token_lease);
	snprintf(ver, sizeof(ver), "%lld", a->from);
	b = pg_batch_new(tok_on_claim, a);
	pg_batch_add(b, true, "tok_claim", 4, (const char *[]){ a->id, k->owner, lease, ver });
	if (pg_submit(k->w->pg, b) == PG_OK)
		return;
	/* The database is away: its callers wait no longer than a few tries. */
	if (++a->attempt > (int)k->w->cfg->tiktok.retry_attempts)
		tok_failed(a, "the database is unavailable");
	else
		tok_later(a, 1000, tok_claim);
}

/* Start a renewal unless one is under way (its outcome serves every waiter). */
static void
tok_start(struct tok_auth *a)
{
	if (a->busy || a->k->closing)
		return;
	twheel_cancel(&a->due);
	a->busy = true;
	a->from = a->version;
	a->attempt = 0;
	a->poll_until = 0;
	tok_claim(a);
}

static void
tok_on_due(struct twheel_timer *t)
{
	tok_start(container_of(t, struct tok_auth, due));
}

static struct tok_auth *
tok_auth_new(struct tok *k, const struct shop *s)
{
	struct tok_auth *a = xcalloc(1, sizeof(*a));

	a->k = k;
	snprintf(a->id, sizeof(a->id), "%s", s->auth_id);
	a->version = s->token_version;
	a->expires = s->token_expires;
	TAILQ_INIT(&a->waiters);
	twheel_timer_init(&a->due, tok_on_due);
	twheel_timer_init(&a->retry, tok_on_retry);
	LIST_INSERT_HEAD(&k->auths, a, entry);
	return a;
}

static void
tok_auth_free(struct tok_auth *a)
{
	twheel_cancel(&a->due);
	twheel_cancel(&a->retry);
	LIST_REMOVE(a, entry);
	tok_forget(a);
	free(a);
}

void
tok_shops_loaded(struct tok *k)
{
	struct shops *sh = tok_shops(k);
	struct tok_auth *a, *next;

	LIST_FOREACH(a, &k->auths, entry)
		a->seen = false;
	for (size_t i = 0; i < shops_count(sh); i++) {
		const struct shop *s = shops_at(sh, i);

		if (s->auth_id[0] == '\0')
			continue;
		if ((a = tok_find(k, s->auth_id)) == NULL)
			a = tok_auth_new(k, s);
		a->seen = true;
		a->active = strcmp(s->auth_status, "active") == 0;
		if (s->token_version > a->version || a->expires == 0) {
			a->version = s->token_version;
			a->expires = s->token_expires;
		}
	}
	for (a = LIST_FIRST(&k->auths); a != NULL; a = next) {
		next = LIST_NEXT(a, entry);
		if (!a->seen && !a->busy && TAILQ_EMPTY(&a->waiters))
			tok_auth_free(a);
		else if (!a->busy)
			tok_schedule(a);
	}
}

void
tok_recover(struct tok *k, const char *shop_id, const char *used, tok_recover_cb *cb, void *arg)
{
	const struct shop *s = shops_find_id(tok_shops(k), shop_id);
	struct tok_auth *a;
	struct tok_waiter *wt;

	if (s == NULL || s->auth_id[0] == '\0' || k->closing) {
		cb(arg, k->closing ? TOK_LATER : TOK_REFUSED, NULL, s == NULL ? "the shop is unknown" :
		    "the shop's token was set by hand and cannot be renewed");
		return;
	}
	if (strcmp(s->access_token, used) != 0) {
		cb(arg, TOK_RETRY_WITH, s->access_token, "");
		return;
	}
	if ((a = tok_find(k, s->auth_id)) == NULL)
		a = tok_auth_new(k, s);
	wt = xcalloc(1, sizeof(*wt));
	wt->cb = cb;
	wt->arg = arg;
	TAILQ_INSERT_TAIL(&a->waiters, wt, entry);
	tok_start(a);
}

static void
tok_on_renew_msg(struct worker *w, void *arg)
{
	struct tok *k = w->svc[SERVICE_TOK];
	const struct shop *s = shops_find_id(tok_shops(k), arg);
	struct tok_auth *a;

	if (s != NULL && s->auth_id[0] != '\0') {
		if ((a = tok_find(k, s->auth_id)) == NULL)
			a = tok_auth_new(k, s);
		log_info("renewing a token early", "authorization=%s", a->id);
		tok_start(a);
	}
	free(arg);
}

static void
tok_drop_msg(struct worker *w, void *arg)
{
	free(arg);
}

bool
tok_renew_now(struct worker *w, const char *shop_id)
{
	const struct shop *s = shops_find_id(webhook_shops(w->svc[SERVICE_WEBHOOK]), shop_id);

	if (s == NULL || s->auth_id[0] == '\0')
		return false;
	worker_post_owned(worker_owner(w->set, s->auth_id), tok_on_renew_msg, tok_drop_msg,
	    xstrdup(shop_id));
	return true;
}

struct tok *
tok_new(struct worker *w)
{
	struct tok *k = xcalloc(1, sizeof(*k));

	k->w = w;
	LIST_INIT(&k->auths);
	snprintf(k->owner, sizeof(k->owner), "%s/%d", w->set->instance, w->id);
	return k;
}

void
tok_close(struct tok *k)
{
	struct tok_auth *a;

	k->closing = true;
	LIST_FOREACH(a, &k->auths, entry) {
		twheel_cancel(&a->due);
		twheel_cancel(&a->retry);
		tok_wake(a, TOK_LATER, NULL, "shutting down");
	}
}

void
tok_free(struct tok *k)
{
	if (k == NULL)
		return;
	while (!LIST_EMPTY(&k->auths))
		tok_auth_free(LIST_FIRST(&k->auths));
	free(k);
}

void
tok_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long n[TOK_OUT_MAX] = { 0 };

	for (int i = 0; i < s->n; i++)
		for (int o = 0; o < TOK_OUT_MAX; o++)
			n[o] += atomic_load(&((struct tok *)s->workers[i].svc[SERVICE_TOK])->outcomes[o]);
	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_token_renewals_total Token renewals by outcome (adopted: "
	    "another worker or daemon renewed it first).\n"
	    "# TYPE orderflow_tiktok_token_renewals_total counter\n");
	for (int o = 0; o < TOK_OUT_MAX; o++)
		evbuffer_add_printf(out, "orderflow_tiktok_token_renewals_total{outcome=\"%s\"} %llu\n",
		    tok_out_names[o], n[o]);
}
