/*
 * rest_bulk: POST /api/orders/bulk/status and GET /api/orders/bulk/{id}.
 *
 * The request's worker records the batch, resolves every id to its order
 * in one read, settles what fails before any change (not found, named
 * twice), and hands each owner worker its share; an owner changes its
 * orders batch_size at a time, each chunk one transaction (order_change,
 * the outcome rows and the batch's counters), and reports back.  When
 * every owner has, the batch is marked done (or interrupted, when a chunk
 * failed and the rest of that owner's share was not tried) and answered.
 */
#include "config.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/order.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/rest_bulk.h"
#include "orderflow/worker.h"

#define REST_BULK_DUPLICATE "the same order is named earlier in the batch"

static const char rest_bulk_create_sql[] =
    "INSERT INTO bulk_batches (user_id, target_status, reason, batch_size, total)"
    " VALUES ($1::uuid, $2::order_status, $3, $4::integer, $5::integer) RETURNING id::text";

/* Every id of the request to its order among the caller's, in request order. */
static const char rest_bulk_resolve_sql[] =
    "SELECT r.n::integer, o.id::text, o.tiktok_order_id"
    " FROM unnest($2::text[]) WITH ORDINALITY AS r(k, n) LEFT JOIN LATERAL"
    " (SELECT x.id, x.tiktok_order_id FROM orders x WHERE x.user_id = $1::uuid AND"
    "  (x.id = CASE WHEN r.k ~ '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'"
    "  THEN r.k::uuid END OR x.tiktok_order_id = r.k) LIMIT 1) o ON true ORDER BY r.n";

/* The outcome of ids that failed before any change. */
static const char rest_bulk_fail_sql[] =
    "WITH f AS (SELECT * FROM unnest($3::integer[], $4::text[], $5::text[]) AS f(n, k, e)),"
    " it AS (INSERT INTO bulk_batch_items (batch_id, n, order_key, order_id, ok, error)"
    "  SELECT $1::uuid, f.n, f.k, NULL, false, f.e FROM f RETURNING 1)"
    " UPDATE bulk_batches SET failed = failed + (SELECT count(*) FROM it)"
    " WHERE id = $1::uuid AND user_id = $2::uuid";

/* One chunk on the owner: the changes, their outcome rows, the batch's counters. */
static const char rest_bulk_chunk_sql[] =
    "WITH r AS (SELECT * FROM order_change($1::jsonb, $2::jsonb, false)),"
    " it AS (INSERT INTO bulk_batch_items (batch_id, n, order_key, order_id, ok, error)"
    "  SELECT $3::uuid, r.n, r.key, r.order_id, r.verdict = 'ok', CASE r.verdict"
    "  WHEN 'ok' THEN NULL WHEN 'not_found' THEN 'not found'"
    "  WHEN 'duplicate' THEN '" REST_BULK_DUPLICATE "'"
    "  WHEN 'illegal' THEN 'an order that is ' || r.prev_status || ' cannot become ' || $5"
    "  ELSE r.verdict END FROM r RETURNING error),"
    " bb AS (UPDATE bulk_batches SET"
    "  processed = processed + (SELECT count(*) FROM r WHERE verdict = 'ok'),"
    "  failed = failed + (SELECT count(*) FROM r WHERE verdict <> 'ok')"
    "  WHERE id = $3::uuid AND user_id = $4::uuid RETURNING 1)"
    " SELECT r.*, (SELECT count(*) FROM it), (SELECT count(*) FROM bb) FROM r";

static const char rest_bulk_finish_sql[] =
    "UPDATE bulk_batches SET state = $3, finished_at = now()"
    " WHERE id = $1::uuid AND user_id = $2::uuid";

static const char rest_bulk_get_sql[] =
    "SELECT json_build_object('batch_id', b.id, 'state', b.state, 'status', b.target_status,"
    " 'reason', b.reason, 'batch_size', b.batch_size, 'total', b.total, 'processed', b.processed,"
    " 'failed', b.failed, 'created_at', b.created_at, 'finished_at', b.finished_at,"
    " 'items', (SELECT coalesce(json_agg(json_build_object('order_id', i.order_key, 'ok', i.ok,"
    "  'error', i.error) ORDER BY i.n), '[]') FROM bulk_batch_items i WHERE i.batch_id = b.id))::text"
    " FROM bulk_batches b WHERE b.id = $1::uuid AND b.user_id = $2::uuid";

/* One id's failure, for the answer (sorted by n at the end). */
struct rest_bulk_error {
	int	n;		/* its place in the request, from 1 */
	char	*key;
	char	*error;
};

struct rest_bulk;

/* An owner's share: built on home, run on the owner, read again on home. */
struct rest_bulk_part {
	struct rest_bulk *bk;		/* home's; only read for immutable fields on the owner */
	struct worker	*owner;
	int		n;		/* ids in the share */
	int		*ns;		/* their places in the request */
	int		next;		/* first id of the next chunk */
	long long	processed;
	int		nerr;
	struct rest_bulk_error *errs;	/* failures of this share */
	bool		interrupted;	/* a chunk failed; the rest was not tried */
};

/* A bulk request in progress, on home. */
struct rest_bulk {
	struct rest_call call;		/* first */
	char		**keys;		/* as sent */
	int		n, size;	/* ids, batch_size */
	int		status;		/* enum order_status */
	char		reason[REST_REASON_SIZE];
	bool		has_reason;
	char		batch_id[37];
	char		sqlstate[6];	/* of the statement that stopped the batch, or "" */
	struct rest_bulk_part *parts;	/* one per worker */
	int		waiting;	/* parts not reported yet */
	long long	processed;
	int		nerr;
	struct rest_bulk_error *errs;	/* every failure, for the answer */
	bool		interrupted;
};

static void
rest_bulk_errors_free(struct rest_bulk_error *e, int n)
{
	for (int i = 0; i < n; i++) {
		free(e[i].key);
		free(e[i].error);
	}
	free(e);
}

static void
rest_bulk_free(struct rest_call *rc)
{
	struct rest_bulk *bk = (struct rest_bulk *)rc;

	for (int i = 0; i < bk->n; i++)
		free(bk->keys[i]);
	free(bk->keys);
	if (bk->parts != NULL) {
		for (int i = 0; i < rc->home->set->n; i++) {
			free(bk->parts[i].ns);
			rest_bulk_errors_free(bk->parts[i].errs, bk->parts[i].nerr);
		}
		free(bk->parts);
	}
	rest_bulk_errors_free(bk->errs, bk->nerr);
	free(bk);
}

static void
rest_bulk_add_error(struct rest_bulk_error **errs, int *nerr, int n, const char *key,
    const char *error)
{
	*errs = xrealloc(*errs, (size_t)(*nerr + 1) * sizeof(**errs));
	(*errs)[*nerr] = (struct rest_bulk_error){ n, xstrdup(key), xstrdup(error) };
	(*nerr)++;
}

static const char *
rest_bulk_fields(json_t *doc, struct rest_bulk *bk, long long max)
{
	const char *k;
	json_t *v, *e;
	size_t i;

	bk->size = 100;
	bk->status = -1;
	json_object_foreach(doc, k, v) {
		if (strcmp(k, "order_ids") == 0) {
			if (!json_is_array(v) || json_array_size(v) == 0 ||
			    (long long)json_array_size(v) > max || bk->keys != NULL)
				return "\"order_ids\" must be an array of 1 to api.max_bulk ids";
			bk->keys = xcalloc(json_array_size(v), sizeof(*bk->keys));
			json_array_foreach(v, i, e) {
				if (!json_is_string(e) || json_string_length(e) == 0 ||
				    json_string_length(e) > 64 ||
				    !rest_text_ok(json_string_value(e), json_string_length(e)))
					return "\"order_ids\" must hold order UUIDs or TikTok order ids";
				bk->keys[bk->n++] = xstrdup(json_string_value(e));
			}
		} else if (strcmp(k, "status") == 0) {
			if (!json_is_string(v) || (bk->status = order_status_parse(json_string_value(v))) < 0)
				return "\"status\" must be an order status";
		} else if (strcmp(k, "reason") == 0) {
			if (!rest_reason(v, bk->reason, &bk->has_reason))
				return "\"reason\" must be text of at most 255 characters";
		} else if (strcmp(k, "batch_size") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
				return "\"batch_size\" must be an integer in 1..1000";
			bk->size = (int)json_integer_value(v);
		} else {
			return rest_unknown_field(k);
		}
	}
	if (bk->n == 0)
		return "\"order_ids\" is required";
	return bk->status < 0 ? "\"status\" is required" : NULL;
}

/* ---- the answer (home) -------------------------------------------------- */

static int
rest_bulk_error_cmp(const void *a, const void *b)
{
	return ((const struct rest_bulk_error *)a)->n - ((const struct rest_bulk_error *)b)->n;
}

static void
rest_bulk_reply(struct rest_bulk *bk, const char *error)
{
	struct evbuffer *out;

	if (error != NULL) {
		log_warn("bulk status change interrupted", "batch=%s done=%lld error=%s", bk->batch_id,
		    bk->processed + bk->nerr, log_quote(error));
		rest_db_error(&bk->call, bk->sqlstate, bk->batch_id[0] == '\0' ?
		    "the batch cannot be started now" :
		    "the batch was interrupted; GET /api/orders/bulk/{batch_id} shows how far it got");
		return;
	}
	if (bk->nerr > 1)	/* errs is NULL when there are none, and qsort must not see it */
		qsort(bk->errs, (size_t)bk->nerr, sizeof(*bk->errs), rest_bulk_error_cmp);
	out = evbuffer_new();
	evbuffer_add_printf(out, "{\"success\":true,\"processed\":%lld,\"failed\":%lld,"
	    "\"batch_id\":\"%s\",\"errors\":[", bk->processed, (long long)bk->n - bk->processed,
	    bk->batch_id);
	for (int i = 0; i < bk->nerr; i++) {
		json_t *e = json_pack("{s:s,s:s}", "order_id", bk->errs[i].key, "error",
		    bk->errs[i].error);
		char *text = json_dumps(e, JSON_COMPACT);

		evbuffer_add_printf(out, "%s%s", i ? "," : "", text);
		free(text);
		json_decref(e);
	}
	evbuffer_add(out, "]}", 2);
	rest_reply(&bk->call, 200, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
	evbuffer_free(out);
}

static void
rest_bulk_on_finish(struct pg_batch *b, void *arg)
{
	struct rest_bulk *bk = arg;
	const char *error = pg_batch_error(b);

	rest_bulk_reply(bk, error != NULL ? error : bk->interrupted ? "a chunk failed" : NULL);
}

/* Every share reported: mark the batch done or interrupted, then answer. */
static void
rest_bulk_finish(struct rest_bulk *bk)
{
	struct pg_batch *b = pg_batch_new(rest_bulk_on_finish, bk);

	pg_batch_add(b, true, "rest_bulk_finish", 3, (const char *[]){ bk->batch_id,
	    bk->call.creator, bk->interrupted ? "interrupted" : "done" });
	if (pg_submit(worker_self()->pg, b) != PG_OK)
		rest_bulk_reply(bk, "database unavailable");
}

/* On home: a share's report. */
static void
rest_bulk_on_part(struct worker *w, void *arg)
{
	struct rest_bulk_part *pt = arg;
	struct rest_bulk *bk = pt->bk;

	bk->processed += pt->processed;
	bk->interrupted |= pt->interrupted;
	for (int i = 0; i < pt->nerr; i++)
		rest_bulk_add_error(&bk->errs, &bk->nerr, pt->errs[i].n, pt->errs[i].key,
		    pt->errs[i].error);
	if (--bk->waiting == 0)
		rest_bulk_finish(bk);
}

static void
rest_bulk_on_part_dropped(struct worker *w, void *arg)
{
	struct rest_bulk_part *pt = arg;

	if (--pt->bk->waiting == 0) {
		httpd_abandon(pt->bk->call.hr);
		rest_free(&pt->bk->call);
	}
}

/* ---- a share (owner) ----------------------------------------------------- */

static void rest_bulk_chunk(struct worker *w, void *arg);

static void
rest_bulk_part_done(struct rest_bulk_part *pt)
{
	worker_post_owned(pt->bk->call.home, rest_bulk_on_part, rest_bulk_on_part_dropped, pt);
}

static void
rest_bulk_on_chunk(struct pg_batch *b, void *arg)
{
	struct rest_bulk_part *pt = arg;
	struct rest_bulk *bk = pt->bk;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQnfields(r) != OSTORE_NCOLS + 2) {
		log_warn("bulk chunk failed", "batch=%s error=%s", bk->batch_id,
		    log_quote(pg_batch_error(b) ? pg_batch_error(b) : "unexpected result"));
		pt->interrupted = true;
		rest_bulk_part_done(pt);
		return;
	}
	ostore_fire(pt->owner, r);
	for (int i = 0; i < PQntuples(r); i++) {
		const char *v = PQgetvalue(r, i, OSTORE_VERDICT);
		char msg[128];

		if (strcmp(v, "ok") == 0) {
			pt->processed++;
			continue;
		}
		if (strcmp(v, "illegal") == 0)
			snprintf(msg, sizeof(msg), "an order that is %s cannot become %s",
			    PQgetvalue(r, i, OSTORE_PREV), order_status_name(bk->status));
		else
			snprintf(msg, sizeof(msg), "%s", strcmp(v, "not_found") == 0 ? "not found" :
			    strcmp(v, "duplicate") == 0 ? REST_BULK_DUPLICATE : v);
		rest_bulk_add_error(&pt->errs, &pt->nerr, atoi(PQgetvalue(r, i, OSTORE_N)),
		    PQgetvalue(r, i, OSTORE_KEY), msg);
	}
	pt->next += bk->size;
	rest_bulk_chunk(pt->owner, pt);
}

/* The next batch_size ids of the share, one transaction. */
static void
rest_bulk_chunk(struct worker *w, void *arg)
{
	struct rest_bulk_part *pt = arg;
	struct rest_bulk *bk = pt->bk;
	int to = pt->next + bk->size < pt->n ? pt->next + bk->size : pt->n, k = 0;
	struct ostore_item *items;
	json_t *meta;
	char actor[64], machine[ORDER_MACHINE_JSON_MAX], *json;
	struct pg_batch *b;

	if (pt->next >= pt->n) {
		rest_bulk_part_done(pt);
		return;
	}
	items = xcalloc((size_t)(to - pt->next), sizeof(*items));
	meta = json_pack("{s:s}", "bulk_batch_id", bk->batch_id);
	snprintf(actor, sizeof(actor), "user:%s", bk->call.creator);
	for (int i = pt->next; i < to; i++)
		items[k++] = (struct ostore_item){ .n = pt->ns[i], .key = bk->keys[pt->ns[i] - 1],
		    .creator = bk->call.creator, .status = bk->status,
		    .reason = bk->has_reason ? bk->reason : NULL, .source = ORDER_SOURCE_USER,
		    .actor = actor, .changed_by = bk->call.creator, .meta = meta };
	json = ostore_items_json(items, k);
	ostore_machine(machine, sizeof(machine));
	b = pg_batch_new(rest_bulk_on_chunk, pt);
	pg_batch_add(b, true, "rest_bulk_chunk", 5, (const char *[]){ json, machine, bk->batch_id,
	    bk->call.creator, order_status_name(bk->status) });
	free(json);
	free(items);
	json_decref(meta);
	if (pg_submit(w->pg, b) != PG_OK) {
		pt->interrupted = true;
		rest_bulk_part_done(pt);
	}
}

/* ---- the start (home) --------------------------------------------------- */

/* Hand every non-empty share to its owner. */
static void
rest_bulk_dispatch(struct rest_bulk *bk)
{
	struct worker_set *s = bk->call.home->set;

	bk->waiting = 0;
	for (int i = 0; i < s->n; i++)
		bk->waiting += bk->parts[i].n > 0;
	if (bk->waiting == 0) {
		rest_bulk_finish(bk);
		return;
	}
	for (int i = 0; i < s->n; i++) {
		if (bk->parts[i].n == 0)
			continue;
		if (&s->workers[i] == bk->call.home)
			rest_bulk_chunk(&s->workers[i], &bk->parts[i]);
		else
			worker_post_owned(&s->workers[i], rest_bulk_chunk, rest_bulk_on_part_dropped,
			    &bk->parts[i]);
	}
}

static void
rest_bulk_on_failed_stored(struct pg_batch *b, void *arg)
{
	struct rest_bulk *bk = arg;

	if (pg_batch_error(b) != NULL) {
		snprintf(bk->sqlstate, sizeof(bk->sqlstate), "%s", pg_batch_sqlstate(b));
		rest_bulk_reply(bk, pg_batch_error(b));
		return;
	}
	rest_bulk_dispatch(bk);
}

/* Store the outcome of the ids that failed before any change, then dispatch. */
static void
rest_bulk_store_failed(struct rest_bulk *bk)
{
	struct evbuffer *ns = evbuffer_new();
	char **keys = xcalloc((size_t)bk->nerr + 1, sizeof(char *)), **errs;
	char *ka, *ea;
	struct pg_batch *b;

	errs = xcalloc((size_t)bk->nerr + 1, sizeof(char *));
	evbuffer_add(ns, "{", 1);
	for (int i = 0; i < bk->nerr; i++) {
		evbuffer_add_printf(ns, "%s%d", i ? "," : "", bk->errs[i].n);
		keys[i] = bk->errs[i].key;
		errs[i] = bk->errs[i].error;
	}
	evbuffer_add(ns, "}", 2);
	ka = rest_text_array(keys, 0, bk->nerr);
	ea = rest_text_array(errs, 0, bk->nerr);
	b = pg_batch_new(rest_bulk_on_failed_stored, bk);
	pg_batch_add(b, true, "rest_bulk_fail", 5, (const char *[]){ bk->batch_id, bk->call.creator,
	    (const char *)evbuffer_pullup(ns, -1), ka, ea });
	free(ka);
	free(ea);
	free(keys);
	free(errs);
	evbuffer_free(ns);
	if (pg_submit(worker_self()->pg, b) != PG_OK)
		rest_bulk_reply(bk, "database unavailable");
}

/* Sort the resolved ids: failures now, the rest into their owner's share. */
static void
rest_bulk_sort(struct rest_bulk *bk, PGresult *r)
{
	struct worker_set *s = bk->call.home->set;
	json_t *seen = json_object();

	bk->parts = xcalloc((size_t)s->n, sizeof(*bk->parts));
	for (int i = 0; i < s->n; i++) {
		bk->parts[i].bk = bk;
		bk->parts[i].owner = &s->workers[i];
		bk->parts[i].ns = xcalloc((size_t)bk->n, sizeof(int));
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int n = atoi(PQgetvalue(r, i, 0));
		const char *id = PQgetvalue(r, i, 1);
		struct rest_bulk_part *pt;

		if (PQgetisnull(r, i, 1)) {
			rest_bulk_add_error(&bk->errs, &bk->nerr, n, bk->keys[n - 1], "not found");
		} else if (json_object_get(seen, id) != NULL) {
			rest_bulk_add_error(&bk->errs, &bk->nerr, n, bk->keys[n - 1], REST_BULK_DUPLICATE);
		} else {
			json_object_set_new(seen, id, json_true());
			pt = &bk->parts[ostore_owner(s, PQgetvalue(r, i, 2))->id];
			pt->ns[pt->n++] = n;
		}
	}
	json_decref(seen);
}

static void
rest_bulk_on_resolved(struct pg_batch *b, void *arg)
{
	struct rest_bulk *bk = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != bk->n) {
		bk->interrupted = true;
		rest_bulk_finish(bk);
		return;
	}
	rest_bulk_sort(bk, r);
	if (bk->nerr > 0)
		rest_bulk_store_failed(bk);
	else
		rest_bulk_dispatch(bk);
}

static void
rest_bulk_on_created(struct pg_batch *b, void *arg)
{
	struct rest_bulk *bk = arg;
	PGresult *r = pg_batch_result(b, 0);
	char *keys;
	struct pg_batch *q;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		snprintf(bk->sqlstate, sizeof(bk->sqlstate), "%s", pg_batch_sqlstate(b));
		rest_bulk_reply(bk, pg_batch_error(b) ? pg_batch_error(b) : "unexpected result");
		return;
	}
	snprintf(bk->batch_id, sizeof(bk->batch_id), "%s", PQgetvalue(r, 0, 0));
	keys = rest_text_array(bk->keys, 0, bk->n);
	q = pg_batch_new(rest_bulk_on_resolved, bk);
	pg_batch_add(q, true, "rest_bulk_resolve", 2, (const char *[]){ bk->call.creator, keys });
	free(keys);
	if (pg_submit(worker_self()->pg, q) != PG_OK) {
		bk->interrupted = true;
		rest_bulk_finish(bk);
	}
}

static void
rest_bulk_run(struct rest_call *rc)
{
	struct rest_bulk *bk = (struct rest_bulk *)rc;
	json_t *doc = rest_body(rc);
	const char *bad;
	char size[16], total[16];
	struct pg_batch *b;

	if (doc == NULL)
		return;
	bad = rest_bulk_fields(doc, bk, rc->home->cfg->api.max_bulk);
	json_decref(doc);
	if (bad != NULL) {
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	snprintf(size, sizeof(size), "%d", bk->size);
	snprintf(total, sizeof(total), "%d", bk->n);
	b = pg_batch_new(rest_bulk_on_created, bk);
	pg_batch_add(b, true, "rest_bulk_create", 5, (const char *[]){ rc->creator,
	    order_status_name(bk->status), bk->has_reason ? bk->reason : NULL, size, total });
	if (pg_submit(rc->home->pg, b) != PG_OK)
		rest_bulk_reply(bk, "database unavailable");
}

void
rest_bulk_status(struct httpd_req *hr)
{
	struct rest_bulk *bk = xcalloc(1, sizeof(*bk));

	bk->call.free = rest_bulk_free;
	rest_begin(hr, &bk->call, rest_bulk_run);
}

/* ---- GET /api/orders/bulk/{id} ----------------------------------------- */

static void
rest_bulk_on_get(struct pg_batch *b, void *arg)
{
	struct rest_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL)
		rest_db_failed(c, b, "the batch cannot be read now");
	else if (PQntuples(r) == 0)
		rest_error(c, 404, "not_found", "no such batch");
	else
		rest_reply(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

static void
rest_bulk_get_run(struct rest_call *c)
{
	struct pg_batch *b;

	if (!rest_uuid(c->path_id)) {
		rest_error(c, 404, "not_found", "no such batch");
		return;
	}
	b = pg_batch_new(rest_bulk_on_get, c);
	pg_batch_add(b, true, "rest_bulk_get", 2, (const char *[]){ c->path_id, c->creator });
	rest_submit(c, b);
}

void
rest_bulk_get(struct httpd_req *hr)
{
	rest_begin(hr, xcalloc(1, sizeof(struct rest_call)), rest_bulk_get_run);
}

void
rest_bulk_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "rest_bulk_create", rest_bulk_create_sql);
	pg_pool_prepare(pg, "rest_bulk_resolve", rest_bulk_resolve_sql);
	pg_pool_prepare(pg, "rest_bulk_fail", rest_bulk_fail_sql);
	pg_pool_prepare(pg, "rest_bulk_chunk", rest_bulk_chunk_sql);
	pg_pool_prepare(pg, "rest_bulk_finish", rest_bulk_finish_sql);
	pg_pool_prepare(pg, "rest_bulk_get", rest_bulk_get_sql);
}
