/*
 * shops: per-worker shop credentials, reloaded from PostgreSQL.
 */
#include "config.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/shops.h"
#include "orderflow/tok.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"

/* Early reloads on unknown shops, at most this often. */
#define SHOPS_MISS_RELOAD_US 1000000

/* Someone to tell when a fresh load is done (shops_reload_then). */
struct shops_waiter {
	struct shops_waiter *link;
	worker_fn	*fn;
	void		*arg;
};

struct shops {
	struct worker	*w;
	struct shop	*list;		/* sorted by tiktok_shop_id */
	size_t		n;
	struct shop_app	*apps;		/* distinct (key, secret), pointing into list */
	size_t		napps;
	atomic_bool	loaded;		/* a load has succeeded; read by other threads */
	bool		loading;	/* a load is in flight */
	bool		again;		/* asked for while loading: it may predate the change */
	struct shops_waiter *next;	/* told when a load that starts after them ends */
	struct shops_waiter *current;	/* told when the load in flight ends */
	int64_t		last_miss_reload; /* mono us */
	struct event	*timer;		/* next periodic reload */
	bool		stopped;	/* shutting down: no more reloads */
};

/*
 * A connected shop's token is its authorization's; a shop set up by hand
 * keeps its own.  A disconnected shop is not loaded: its webhooks are an
 * unknown shop's (401, not stored), and nothing polls it.
 */
static const char shops_load_sql[] =
    "SELECT s.id::text, s.tiktok_shop_id, s.app_key, s.app_secret, s.status::text,"
    " s.creator_id::text, coalesce(a.access_token, s.access_token, ''),"
    " coalesce(s.shop_cipher, ''), coalesce(a.id::text, ''), coalesce(a.version, 0),"
    " coalesce(extract(epoch FROM a.access_token_expires_at)::bigint, 0), coalesce(a.status, '')"
    " FROM shops s LEFT JOIN tiktok_authorizations a ON a.id = s.authorization_id"
    " WHERE s.status <> 'disconnected'";

void
shops_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "shops_load", shops_load_sql);
}

static int
shops_cmp(const void *a, const void *b)
{
	return strcmp(((const struct shop *)a)->tiktok_shop_id,
	    ((const struct shop *)b)->tiktok_shop_id);
}

static void
shops_clear(struct shop *list, size_t n, struct shop_app *apps)
{
	for (size_t i = 0; i < n; i++) {
		free(list[i].id);
		free(list[i].tiktok_shop_id);
		free(list[i].app_key);
		free(list[i].app_secret);
		free(list[i].status);
		free(list[i].creator_id);
		free(list[i].access_token);
		free(list[i].shop_cipher);
		free(list[i].auth_id);
		free(list[i].auth_status);
	}
	free(list);
	free(apps);
}

/* Distinct credentials, so a webhook is checked once per app, not per shop. */
static void
shops_index_apps(struct shops *s)
{
	s->apps = xcalloc(s->n ? s->n : 1, sizeof(*s->apps));
	s->napps = 0;
	for (size_t i = 0; i < s->n; i++) {
		bool seen = false;

		for (size_t j = 0; j < s->napps && !seen; j++)
			seen = strcmp(s->apps[j].key, s->list[i].app_key) == 0 &&
			    strcmp(s->apps[j].secret, s->list[i].app_secret) == 0;
		if (!seen)
			s->apps[s->napps++] = (struct shop_app){ s->list[i].app_key, s->list[i].app_secret };
	}
}

/* Until the first load succeeds nothing can be verified: retry soon. */
#define SHOPS_FIRST_RETRY_MS 200

static void
shops_schedule(struct shops *s)
{
	int64_t ms = atomic_load(&s->loaded) ? s->w->cfg->webhook.shop_refresh : SHOPS_FIRST_RETRY_MS;

	if (s->stopped)
		return;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	evtimer_add(s->timer, &tv);
}

/* The load in flight ended (loaded or not): its waiters may go on. */
static void
shops_tell(struct shops *s)
{
	struct shops_waiter *wt;

	while ((wt = s->current) != NULL) {
		s->current = wt->link;
		wt->fn(s->w, wt->arg);
		free(wt);
	}
}

static void
shops_on_load(struct pg_batch *b, void *arg)
{
	struct shops *s = arg;
	PGresult *r = pg_batch_result(b, 0);
	struct shop *list;
	size_t n;

	s->loading = false;
	shops_tell(s);
	if (pg_batch_error(b) != NULL || r == NULL || PQnfields(r) != 12) {
		log_debug("cannot load shops", "error=%s",
		    log_quote(pg_batch_error(b) != NULL ? pg_batch_error(b) : "bad result"));
		shops_schedule(s);
		return;
	}
	n = (size_t)PQntuples(r);
	list = xcalloc(n ? n : 1, sizeof(*list));
	for (size_t i = 0; i < n; i++) {
		list[i].id = xstrdup(PQgetvalue(r, (int)i, 0));
		list[i].tiktok_shop_id = xstrdup(PQgetvalue(r, (int)i, 1));
		list[i].app_key = xstrdup(PQgetvalue(r, (int)i, 2));
		list[i].app_secret = xstrdup(PQgetvalue(r, (int)i, 3));
		list[i].status = xstrdup(PQgetvalue(r, (int)i, 4));
		list[i].creator_id = xstrdup(PQgetvalue(r, (int)i, 5));
		list[i].access_token = xstrdup(PQgetvalue(r, (int)i, 6));
		list[i].shop_cipher = xstrdup(PQgetvalue(r, (int)i, 7));
		list[i].auth_id = xstrdup(PQgetvalue(r, (int)i, 8));
		list[i].token_version = strtoll(PQgetvalue(r, (int)i, 9), NULL, 10);
		list[i].token_expires = strtoll(PQgetvalue(r, (int)i, 10), NULL, 10);
		list[i].auth_status = xstrdup(PQgetvalue(r, (int)i, 11));
	}
	qsort(list, n, sizeof(*list), shops_cmp);
	shops_clear(s->list, s->n, s->apps);
	s->list = list;
	s->n = n;
	shops_index_apps(s);
	if (!atomic_load(&s->loaded))
		log_info("shops loaded", "shops=%zu apps=%zu", s->n, s->napps);
	atomic_store(&s->loaded, true);
	tok_shops_loaded(s->w->svc[SERVICE_TOK]);
	if (s->again)
		shops_reload(s);
	else
		shops_schedule(s);
}

void
shops_reload(struct shops *s)
{
	struct pg_batch *b;

	if (s->loading) {
		s->again = true;
		return;
	}
	if (s->stopped)
		return;
	s->again = false;
	b = pg_batch_new(shops_on_load, s);
	pg_batch_add(b, true, "shops_load", 0, NULL);
	if (pg_submit(s->w->pg, b) == PG_OK) {
		s->loading = true;
		s->current = s->next;
		s->next = NULL;
		evtimer_del(s->timer);
	} else {
		/* Database down: try again after the refresh interval. */
		shops_schedule(s);
	}
}

static void
shops_on_timer(evutil_socket_t fd, short what, void *arg)
{
	shops_reload(arg);
}

struct shops *
shops_new(struct worker *w)
{
	struct shops *s = xcalloc(1, sizeof(*s));

	s->w = w;
	s->timer = evtimer_new(w->base, shops_on_timer, s);
	return s;
}

void
shops_start(struct shops *s)
{
	/* The pool is still connecting: the first attempt comes from the timer soon. */
	struct timeval tv = { 0, 50000 };

	evtimer_add(s->timer, &tv);
}

void
shops_stop(struct shops *s)
{
	evtimer_del(s->timer);
	s->stopped = true;
}

void
shops_free(struct shops *s)
{
	if (s == NULL)
		return;
	event_free(s->timer);
	s->timer = NULL;
	shops_clear(s->list, s->n, s->apps);
	/* Waiters of a load that never came (shutdown): their requests were abandoned. */
	for (struct shops_waiter *lists[] = { s->next, s->current }, **l = lists;
	    l < lists + 2; l++)
		while (*l != NULL) {
			struct shops_waiter *wt = *l;

			*l = wt->link;
			free(wt);
		}
	free(s);
}

bool
shops_loaded(const struct shops *s)
{
	return atomic_load(&((struct shops *)s)->loaded);
}

const struct shop *
shops_find(struct shops *s, const char *tiktok_shop_id)
{
	struct shop key = { .tiktok_shop_id = (char *)tiktok_shop_id };
	const struct shop *found = bsearch(&key, s->list, s->n, sizeof(*s->list), shops_cmp);
	int64_t now = util_mono_us();

	if (found == NULL && now - s->last_miss_reload > SHOPS_MISS_RELOAD_US) {
		s->last_miss_reload = now;
		shops_reload(s);
	}
	return found;
}

const struct shop *
shops_find_id(const struct shops *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->list[i].id, id) == 0)
			return &s->list[i];
	return NULL;
}

size_t
shops_count(const struct shops *s)
{
	return s->n;
}

const struct shop *
shops_at(const struct shops *s, size_t i)
{
	return i < s->n ? &s->list[i] : NULL;
}

void
shops_set_status(struct shops *s, const char *id, const char *status)
{
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->list[i].id, id) == 0) {
			free(s->list[i].status);
			s->list[i].status = xstrdup(status);
		}
	}
}

size_t
shops_app_count(const struct shops *s)
{
	return s->napps;
}

const struct shop_app *
shops_app(const struct shops *s, size_t i)
{
	return i < s->napps ? &s->apps[i] : NULL;
}

void
shops_set_token(struct shops *s, const char *auth_id, const char *token, long long version,
    int64_t expires)
{
	for (size_t i = 0; i < s->n; i++) {
		struct shop *sh = &s->list[i];

		if (strcmp(sh->auth_id, auth_id) != 0 || sh->token_version >= version)
			continue;
		free(sh->access_token);
		sh->access_token = xstrdup(token);
		sh->token_version = version;
		sh->token_expires = expires;
	}
}

static void
shops_on_reload_msg(struct worker *w, void *arg)
{
	shops_reload(webhook_shops(w->svc[SERVICE_WEBHOOK]));
}

void
shops_reload_all(struct worker_set *set)
{
	for (int i = 0; i < set->n; i++)
		worker_post(&set->workers[i], shops_on_reload_msg, NULL);
}

void
shops_reload_then(struct shops *s, worker_fn *fn, void *arg)
{
	struct shops_waiter *wt = xcalloc(1, sizeof(*wt));

	*wt = (struct shops_waiter){ s->next, fn, arg };
	s->next = wt;
	shops_reload(s);
	/* Not started (stopped, or the database refused): the timer's load will tell them. */
}
