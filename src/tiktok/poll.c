/*
 * poll: one shop at a time per worker, page by page.
 */
#include "config.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderflow/apply.h"
#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/poll.h"
#include "orderflow/proc.h"
#include "orderflow/shops.h"
#include "orderflow/tt.h"
#include "orderflow/twheel.h"
#include "orderflow/util.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"

/* Pages one run may read: a runaway page_token cannot loop for ever. */
#define POLL_MAX_PAGES 10000
/* How often a disabled or not yet ready poller looks again. */
#define POLL_IDLE_MS 1000

/* The run over one shop. */
struct poll_run {
	struct poll	*pl;
	char		*shop_id;
	int64_t		ge, lt;		/* the window, Unix seconds */
	int64_t		cursor;		/* where the shop's cursor stands before the run */
	char		*page_token;
	int		pages;
	int		parts;		/* page shares still being written by their owners */
	char		*part_error;	/* the first share's failure, or NULL */
	struct ostore_applied applied;	/* what the page's shares wrote */
};

/* The orders of a page that one owner worker writes. */
struct poll_part {
	struct poll_run	*run;		/* read only on the poll's worker */
	struct worker	*poller;	/* where the report goes */
	json_t		*records;
	char		*error;		/* the owner's failure, or NULL */
	struct ostore_applied applied;
};

struct poll {
	struct worker	*w;
	struct twheel_timer timer;
	struct poll_run	*run;		/* the run in progress, or NULL */
	size_t		next;		/* index in the shop list of this round */
	int64_t		round_start_ms;
	int64_t		round_oldest;	/* oldest cursor seen this round, Unix s */
	bool		closing;
	atomic_llong	oldest_cursor;	/* of the last round, Unix s; 0 = none */
	atomic_ullong	runs, failures, pages, applied, stale, unchanged, invalid;
};

static void poll_next_shop(struct poll *pl);

static const char poll_cursor_sql[] =
    "SELECT coalesce(extract(epoch FROM sync_cursor)::bigint, 0),"
    " extract(epoch FROM now())::bigint FROM shops WHERE id = $1::uuid";
static const char poll_advance_sql[] =
    "UPDATE shops SET sync_cursor = to_timestamp($2::bigint), last_sync_at = now()"
    " WHERE id = $1::uuid";

void
poll_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "poll_cursor", poll_cursor_sql);
	pg_pool_prepare(pg, "poll_advance", poll_advance_sql);
}

static void
poll_schedule(struct poll *pl, int64_t ms)
{
	if (pl->closing)
		return;
	twheel_add(pl->w->wheel, &pl->timer, worker_now_ms() + (uint64_t)(ms > 0 ? ms : 0));
}

/* A shop's run ended; ok says whether the cursor moved to run->lt. */
static void
poll_run_end(struct poll_run *run, bool ok, int64_t cursor, const char *why)
{
	struct poll *pl = run->pl;

	if (!ok) {
		util_count(&pl->failures, 1);
		log_info("shop sync failed; the next run covers the gap", "shop=%s error=%s",
		    run->shop_id, log_quote(why));
	}
	if (cursor > 0 && (pl->round_oldest == 0 || cursor < pl->round_oldest))
		pl->round_oldest = cursor;
	pl->run = NULL;
	free(run->shop_id);
	free(run->page_token);
	free(run->part_error);
	free(run);
	if (!pl->closing)
		poll_next_shop(pl);
}

static void
poll_on_advanced(struct pg_batch *b, void *arg)
{
	struct poll_run *run = arg;

	if (pg_batch_error(b) != NULL)
		poll_run_end(run, false, run->cursor, pg_batch_error(b));
	else
		poll_run_end(run, true, run->lt, NULL);
}

static void
poll_advance(struct poll_run *run)
{
	char lt[24];
	struct pg_batch *b = pg_batch_new(poll_on_advanced, run);

	snprintf(lt, sizeof(lt), "%lld", (long long)run->lt);
	pg_batch_add(b, true, "poll_advance", 2, (const char *[]){ run->shop_id, lt });
	if (pg_submit(run->pl->w->pg, b) != PG_OK)
		poll_run_end(run, false, run->cursor, "database unavailable");
}

static void poll_page(struct poll_run *run);

/* The page is written: move on to the next page or the cursor. */
static void
poll_page_written(struct poll_run *run)
{
	struct poll *pl = run->pl;

	if (run->part_error != NULL) {
		poll_run_end(run, false, run->cursor, run->part_error);
		return;
	}
	util_count(&pl->applied, (unsigned long long)run->applied.applied);
	util_count(&pl->stale, (unsigned long long)run->applied.stale);
	util_count(&pl->unchanged, (unsigned long long)run->applied.unchanged);
	if (pl->closing)
		poll_run_end(run, false, run->cursor, "shutting down");
	else if (run->page_token == NULL)
		poll_advance(run);
	else
		poll_page(run);
}

/* On the poll's worker: one owner's share is written (or failed). */
static void
poll_on_part(struct worker *w, void *arg)
{
	struct poll_part *pt = arg;
	struct poll_run *run = pt->run;

	if (pt->error != NULL && run->part_error == NULL)
		run->part_error = xstrdup(pt->error);
	run->applied.applied += pt->applied.applied;
	run->applied.stale += pt->applied.stale;
	run->applied.unchanged += pt->applied.unchanged;
	json_decref(pt->records);
	free(pt->error);
	free(pt);
	if (--run->parts == 0)
		poll_page_written(run);
}

static void
poll_on_part_dropped(struct worker *w, void *arg)
{
	struct poll_part *pt = arg;

	json_decref(pt->records);
	free(pt->error);
	free(pt);
}

static void
poll_on_applied(const char *error, const struct ostore_applied *r, void *arg)
{
	struct poll_part *pt = arg;

	if (error != NULL)
		pt->error = xstrdup(error);
	else
		pt->applied = *r;
	worker_post_owned(pt->poller, poll_on_part, poll_on_part_dropped, pt);
}

/* On the owner: write its share of the page. */
static void
poll_write_part(struct worker *w, void *arg)
{
	struct poll_part *pt = arg;

	if (!ostore_apply(w, pt->run->shop_id, pt->records, "{}", poll_on_applied, pt))
		poll_on_applied("database unavailable", NULL, pt);
}

/*
 * Hand each owner worker the page's orders it owns (ostore): it writes
 * them, so one order is only ever written by one worker.
 */
static void
poll_write(struct poll_run *run, json_t *recs)
{
	struct worker_set *set = run->pl->w->set;
	json_t *shares[set->n > 0 ? set->n : 1], *rec;
	size_t i;

	memset(shares, 0, sizeof(shares));
	json_array_foreach(recs, i, rec) {
		int o = ostore_owner(set, json_string_value(json_object_get(rec,
		    "tiktok_order_id")))->id;

		if (shares[o] == NULL)
			shares[o] = json_array();
		json_array_append(shares[o], rec);
	}
	memset(&run->applied, 0, sizeof(run->applied));
	run->parts = 1;		/* held until every share is out */
	for (int k = 0; k < set->n; k++) {
		struct poll_part *pt;

		if (shares[k] == NULL)
			continue;
		pt = xcalloc(1, sizeof(*pt));
		*pt = (struct poll_part){ run, run->pl->w, shares[k], NULL, { 0, 0, 0 } };
		run->parts++;
		ostore_post(run->pl->w, json_string_value(json_object_get(json_array_get(shares[k], 0),
		    "tiktok_order_id")), poll_write_part, poll_on_part_dropped, pt);
	}
	if (--run->parts == 0)
		poll_page_written(run);
}

/* The page's orders as records, unique by id; invalid ones are counted and skipped. */
static json_t *
poll_records(struct poll *pl, json_t *orders)
{
	json_t *recs = json_array(), *seen = json_object(), *o;
	const char *id;
	char err[256];
	size_t i;

	json_array_foreach(orders, i, o) {
		json_t *rec = apply_normalize(o, &id, err, sizeof(err));

		if (rec == NULL) {
			util_count(&pl->invalid, 1);
			log_warn("invalid order in Search Orders answer", "order=%s error=%s",
			    log_quote(id != NULL ? id : "?"), log_quote(err));
		} else if (json_object_get(seen, id) == NULL) {
			json_object_set_new(seen, id, json_true());
			json_array_append_new(recs, rec);
			continue;
		}
		json_decref(rec);
	}
	json_decref(seen);
	return recs;
}

static void
poll_on_page(const struct tt_result *r, void *arg)
{
	struct poll_run *run = arg;
	struct poll *pl = run->pl;
	const char *token;
	json_t *recs;

	if (pl->closing || r->status != TT_OK) {
		if (r->status == TT_TOKEN)
			proc_pause_shop(pl->w, run->shop_id, r->error);
		poll_run_end(run, false, run->cursor, pl->closing ? "shutting down" : r->error);
		return;
	}
	util_count(&pl->pages, 1);
	token = json_string_value(json_object_get(r->data, "next_page_token"));
	free(run->page_token);
	run->page_token = token != NULL && token[0] != '\0' && strlen(token) < 1024 &&
	    ++run->pages < POLL_MAX_PAGES ? xstrdup(token) : NULL;
	recs = poll_records(pl, json_object_get(r->data, "orders"));
	poll_write(run, recs);
	json_decref(recs);
}

static void
poll_page(struct poll_run *run)
{
	struct poll *pl = run->pl;
	const struct shop *s = shops_find_id(webhook_shops(pl->w->svc[SERVICE_WEBHOOK]), run->shop_id);
	struct tt_creds c;
	enum tt_status st;

	if (s == NULL || strcmp(s->status, "active") != 0) {
		poll_run_end(run, false, run->cursor, "shop no longer active");
		return;
	}
	c = (struct tt_creds){ s->app_key, s->app_secret, s->access_token, s->shop_cipher, s->id };
	st = tt_search_orders(pl->w->svc[SERVICE_TT], &c, run->ge, run->lt, (int)pl->w->cfg->tiktok.sync_page_size,
	    run->page_token, poll_on_page, run);
	if (st != TT_OK)
		poll_run_end(run, false, run->cursor, st == TT_OPEN ? "TikTok breaker open" :
		    "TikTok connection queue full");
}

static void
poll_on_cursor(struct pg_batch *b, void *arg)
{
	struct poll_run *run = arg;
	const struct config *cfg = run->pl->w->cfg;
	PGresult *r = pg_batch_result(b, 0);
	int64_t cursor, now;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1 || PQnfields(r) != 2) {
		poll_run_end(run, false, 0, pg_batch_error(b) ? pg_batch_error(b) : "shop is gone");
		return;
	}
	cursor = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	now = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	run->ge = cursor > 0 ? cursor - cfg->tiktok.sync_margin / 1000 :
	    now - cfg->tiktok.sync_lookback / 1000;
	run->lt = now;
	if (run->ge < 0)
		run->ge = 0;
	/* Until it moves, the old cursor (or the window's start) is what lag is measured from. */
	run->cursor = cursor > 0 ? cursor : run->ge;
	util_count(&run->pl->runs, 1);
	poll_page(run);
}

static void
poll_begin(struct poll *pl, const struct shop *s)
{
	struct poll_run *run = xcalloc(1, sizeof(*run));
	struct pg_batch *b = pg_batch_new(poll_on_cursor, run);

	run->pl = pl;
	run->shop_id = xstrdup(s->id);
	pl->run = run;
	pg_batch_add(b, true, "poll_cursor", 1, (const char *[]){ run->shop_id });
	if (pg_submit(pl->w->pg, b) != PG_OK)
		poll_run_end(run, false, 0, "database unavailable");
}

/* The next active shop of this worker in this round, or the round's end. */
static void
poll_next_shop(struct poll *pl)
{
	struct shops *shops = webhook_shops(pl->w->svc[SERVICE_WEBHOOK]);
	int64_t elapsed;

	while (pl->next < shops_count(shops)) {
		const struct shop *s = shops_at(shops, pl->next++);

		if (strcmp(s->status, "active") == 0 &&
		    worker_owner(pl->w->set, s->tiktok_shop_id) == pl->w) {
			poll_begin(pl, s);
			return;
		}
	}
	atomic_store(&pl->oldest_cursor, pl->round_oldest);
	elapsed = (int64_t)worker_now_ms() - pl->round_start_ms;
	poll_schedule(pl, pl->w->cfg->tiktok.sync_interval - elapsed);
}

static void
poll_on_timer(struct twheel_timer *t)
{
	struct poll *pl = container_of(t, struct poll, timer);

	if (pl->run != NULL)
		return;
	if (pl->w->cfg->tiktok.sync_interval == 0 || !shops_loaded(webhook_shops(pl->w->svc[SERVICE_WEBHOOK]))) {
		poll_schedule(pl, POLL_IDLE_MS);
		return;
	}
	pl->next = 0;
	pl->round_oldest = 0;
	pl->round_start_ms = (int64_t)worker_now_ms();
	poll_next_shop(pl);
}

struct poll *
poll_new(struct worker *w)
{
	struct poll *pl = xcalloc(1, sizeof(*pl));

	pl->w = w;
	twheel_timer_init(&pl->timer, poll_on_timer);
	return pl;
}

void
poll_start(struct poll *pl)
{
	poll_schedule(pl, POLL_IDLE_MS);
}

void
poll_reconfigure(struct poll *pl, const struct config *cfg)
{
	/* A shorter interval should not wait out the old one. */
	if (pl->run == NULL && cfg->tiktok.sync_interval > 0 &&
	    twheel_pending(&pl->timer) &&
	    pl->timer.expire > worker_now_ms() + (uint64_t)cfg->tiktok.sync_interval)
		poll_schedule(pl, cfg->tiktok.sync_interval);
}

void
poll_close(struct poll *pl)
{
	pl->closing = true;
	twheel_cancel(&pl->timer);
}

void
poll_free(struct poll *pl)
{
	if (pl == NULL)
		return;
	poll_close(pl);
	/* A run still out ends in its callback, which the closed pool has already run. */
	free(pl);
}

void
poll_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long runs = 0, fails = 0, pages = 0, inv = 0;
	long long oldest = 0, now = (long long)time(NULL);

	for (int i = 0; i < s->n; i++) {
		struct poll *pl = s->workers[i].svc[SERVICE_POLL];
		long long c = atomic_load(&pl->oldest_cursor);

		runs += atomic_load(&pl->runs);
		fails += atomic_load(&pl->failures);
		pages += atomic_load(&pl->pages);
		inv += atomic_load(&pl->invalid);
		if (c > 0 && (oldest == 0 || c < oldest))
			oldest = c;
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_sync_lag_seconds Now minus the oldest shop sync cursor.\n"
	    "# TYPE orderflow_tiktok_sync_lag_seconds gauge\n"
	    "orderflow_tiktok_sync_lag_seconds %lld\n"
	    "# HELP orderflow_tiktok_sync_runs_total Shop polling runs started.\n"
	    "# TYPE orderflow_tiktok_sync_runs_total counter\n"
	    "orderflow_tiktok_sync_runs_total %llu\n"
	    "# HELP orderflow_tiktok_sync_failures_total Shop polling runs that failed.\n"
	    "# TYPE orderflow_tiktok_sync_failures_total counter\n"
	    "orderflow_tiktok_sync_failures_total %llu\n"
	    "# HELP orderflow_tiktok_sync_pages_total Search Orders pages read.\n"
	    "# TYPE orderflow_tiktok_sync_pages_total counter\n"
	    "orderflow_tiktok_sync_pages_total %llu\n"
	    "# HELP orderflow_tiktok_sync_invalid_total Orders of Search Orders that failed validation.\n"
	    "# TYPE orderflow_tiktok_sync_invalid_total counter\n"
	    "orderflow_tiktok_sync_invalid_total %llu\n",
	    oldest > 0 ? now - oldest : 0, runs, fails, pages, inv);
}

void
poll_synced(struct worker_set *s, unsigned long long v[3])
{
	v[0] = v[1] = v[2] = 0;
	for (int i = 0; i < s->n; i++) {
		v[0] += atomic_load(&((struct poll *)s->workers[i].svc[SERVICE_POLL])->applied);
		v[1] += atomic_load(&((struct poll *)s->workers[i].svc[SERVICE_POLL])->stale);
		v[2] += atomic_load(&((struct poll *)s->workers[i].svc[SERVICE_POLL])->unchanged);
	}
}
