/*
 * rest_shops: the caller's TikTok shops: list, pause, resume, disconnect.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/rest_shops.h"
#include "orderflow/shops.h"
#include "orderflow/worker.h"

/*
 * What a creator may see of a shop: never a token.  $2 NULL: all the
 * caller's shops.  pending_events reads the small partial index of
 * unprocessed events.
 */
#define REST_SHOPS_JSON \
    "json_build_object('id', s.id, 'tiktok_shop_id', s.tiktok_shop_id, 'name', s.shop_name," \
    " 'region', s.region, 'status', s.status, 'paused_reason', s.paused_reason," \
    " 'authorization', CASE WHEN a.id IS NULL THEN 'manual' ELSE a.status END," \
    " 'authorization_error', a.error," \
    " 'token_expires_at', coalesce(a.access_token_expires_at, s.access_token_expires_at)," \
    " 'refresh_token_expires_at', a.refresh_token_expires_at," \
    " 'token_renewed_at', a.refreshed_at, 'last_sync_at', s.last_sync_at," \
    " 'connected_at', coalesce(s.connected_at, s.created_at)," \
    " 'pending_events', (SELECT count(*) FROM webhook_events e WHERE e.shop_id = s.id" \
    "  AND e.processed_at IS NULL AND e.dead_at IS NULL))"

static const char rest_shops_list_sql[] =
    "SELECT json_build_object('shops', coalesce(json_agg(" REST_SHOPS_JSON
    " ORDER BY s.created_at, s.id), '[]'))::text"
    " FROM shops s LEFT JOIN tiktok_authorizations a ON a.id = s.authorization_id"
    " WHERE s.creator_id = $1::uuid";
static const char rest_shops_one_sql[] =
    "SELECT " REST_SHOPS_JSON "::text"
    " FROM shops s LEFT JOIN tiktok_authorizations a ON a.id = s.authorization_id"
    " WHERE s.creator_id = $1::uuid AND s.id = $2::uuid";

#define REST_SHOPS_AUDIT(action) \
    " l AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)" \
    "  SELECT $1::uuid, 'creator', '" action "', 'shop', u.id::text," \
    "  jsonb_build_object('status', s.status), jsonb_build_object('status', u.status::text)" \
    "  FROM u, s)"

/* Each answers (status before, changed, authorization status) for the shop, or no row. */
static const char rest_shops_pause_sql[] =
    "WITH s AS (SELECT x.id, x.status::text AS status, coalesce(a.status, '') AS auth"
    "  FROM shops x LEFT JOIN tiktok_authorizations a ON a.id = x.authorization_id"
    "  WHERE x.id = $2::uuid AND x.creator_id = $1::uuid FOR UPDATE OF x),"
    " u AS (UPDATE shops x SET status = 'paused', paused_reason = $3 FROM s"
    "  WHERE x.id = s.id AND s.status = 'active' RETURNING x.id, x.status),"
    REST_SHOPS_AUDIT("shop.paused")
    " SELECT s.status, (SELECT count(*) FROM u) > 0, s.auth FROM s";
/* Only a paused shop whose token is still good may run again. */
static const char rest_shops_resume_sql[] =
    "WITH s AS (SELECT x.id, x.status::text AS status, coalesce(a.status, '') AS auth"
    "  FROM shops x LEFT JOIN tiktok_authorizations a ON a.id = x.authorization_id"
    "  WHERE x.id = $2::uuid AND x.creator_id = $1::uuid FOR UPDATE OF x),"
    " u AS (UPDATE shops x SET status = 'active', paused_reason = NULL FROM s"
    "  WHERE x.id = s.id AND s.status = 'paused' AND s.auth IN ('', 'active')"
    "  RETURNING x.id, x.status),"
    REST_SHOPS_AUDIT("shop.resumed")
    " SELECT s.status, (SELECT count(*) FROM u) > 0, s.auth FROM s";
/* Disconnect: no token, no sync; the shop row stays for its orders. */
static const char rest_shops_disconnect_sql[] =
    "WITH s AS (SELECT x.id, x.status::text AS status, '' AS auth FROM shops x"
    "  WHERE x.id = $2::uuid AND x.creator_id = $1::uuid FOR UPDATE),"
    " u AS (UPDATE shops x SET status = 'disconnected', paused_reason = 'disconnected by the"
    "  creator', authorization_id = NULL, access_token = NULL, access_token_expires_at = NULL"
    "  FROM s WHERE x.id = s.id AND s.status <> 'disconnected' RETURNING x.id, x.status),"
    /* Its waiting events would wait forever: dead letters, replayable once it is back. */
    " e AS (UPDATE webhook_events w SET dead_at = now(), last_error = 'the shop was disconnected',"
    "  lease_owner = NULL, lease_until = NULL FROM u WHERE w.shop_id = u.id"
    "  AND w.processed_at IS NULL AND w.dead_at IS NULL),"
    REST_SHOPS_AUDIT("shop.disconnected")
    " SELECT s.status, (SELECT count(*) FROM u) > 0, s.auth FROM s";
/* The tokens go with the last shop that used them. */
static const char rest_shops_orphans_sql[] =
    "DELETE FROM tiktok_authorizations a WHERE a.creator_id = $1::uuid"
    " AND NOT EXISTS (SELECT 1 FROM shops s WHERE s.authorization_id = a.id)";

void
rest_shops_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "rest_shops_list", rest_shops_list_sql);
	pg_pool_prepare(pg, "rest_shops_one", rest_shops_one_sql);
	pg_pool_prepare(pg, "rest_shops_pause", rest_shops_pause_sql);
	pg_pool_prepare(pg, "rest_shops_resume", rest_shops_resume_sql);
	pg_pool_prepare(pg, "rest_shops_disconnect", rest_shops_disconnect_sql);
	pg_pool_prepare(pg, "rest_shops_orphans", rest_shops_orphans_sql);
}

enum rest_shops_op { REST_SHOPS_PAUSE, REST_SHOPS_RESUME, REST_SHOPS_DISCONNECT };

struct rest_shops_call {
	struct rest_call call;		/* first */
	enum rest_shops_op op;
	char		reason[REST_REASON_SIZE];
};

static void
rest_shops_on_list(struct pg_batch *b, void *arg)
{
	struct rest_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("shops list failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(c, b, "the shops cannot be read now");
		return;
	}
	rest_reply(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

static void
rest_shops_list_run(struct rest_call *rc)
{
	struct pg_batch *b = pg_batch_new(rest_shops_on_list, rc);

	pg_batch_add(b, true, "rest_shops_list", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

void
rest_shops_list(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, xcalloc(1, sizeof(struct rest_call)), rest_shops_list_run);
}

/* Why the change was refused; NULL when the shop is (now) as asked. */
static const char *
rest_shops_refusal(enum rest_shops_op op, const char *status, const char *auth, bool changed)
{
	if (changed)
		return NULL;
	if (op == REST_SHOPS_DISCONNECT)
		return NULL;		/* disconnected already: the same outcome */
	if (strcmp(status, "disconnected") == 0)
		return "the shop is disconnected: connect it again";
	if (op == REST_SHOPS_PAUSE)
		return NULL;		/* paused or deauthorized already: not running either way */
	if (strcmp(status, "active") == 0)
		return NULL;
	if (strcmp(status, "deauthorized") == 0)
		return "the seller deauthorized the app: connect the shop again";
	if (auth[0] != '\0' && strcmp(auth, "active") != 0)
		return "TikTok will not renew this shop's authorization: connect the shop again";
	return "the shop cannot be resumed";
}

static void
rest_shops_on_change(struct pg_batch *b, void *arg)
{
	struct rest_shops_call *c = arg;
	PGresult *r = pg_batch_result(b, 0), *doc = pg_batch_result(b, 1);
	const char *why;

	if (pg_batch_error(b) != NULL || r == NULL || doc == NULL) {
		log_warn("shop change failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(&c->call, b, "the shop cannot be changed now");
		return;
	}
	if (PQntuples(r) != 1 || PQntuples(doc) != 1) {
		rest_error(&c->call, 404, "not_found", "no such shop");
		return;
	}
	why = rest_shops_refusal(c->op, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2),
	    strcmp(PQgetvalue(r, 0, 1), "t") == 0);
	if (why != NULL) {
		rest_error(&c->call, 409, "conflict", "%s", why);
		return;
	}
	if (strcmp(PQgetvalue(r, 0, 1), "t") == 0)
		shops_reload_all(c->call.home->set);
	rest_reply(&c->call, 200, PQgetvalue(doc, 0, 0), (size_t)PQgetlength(doc, 0, 0));
}

static void
rest_shops_change_run(struct rest_call *rc)
{
	struct rest_shops_call *c = (struct rest_shops_call *)rc;
	static const char *const stmts[] = {
		[REST_SHOPS_PAUSE] = "rest_shops_pause", [REST_SHOPS_RESUME] = "rest_shops_resume",
		[REST_SHOPS_DISCONNECT] = "rest_shops_disconnect",
	};
	struct pg_batch *b = pg_batch_new(rest_shops_on_change, c);

	pg_batch_add(b, true, stmts[c->op], c->op == REST_SHOPS_PAUSE ? 3 : 2,
	    (const char *[]){ rc->creator, rc->path_id, c->reason });
	pg_batch_add(b, true, "rest_shops_one", 2, (const char *[]){ rc->creator, rc->path_id });
	if (c->op == REST_SHOPS_DISCONNECT)
		pg_batch_add(b, true, "rest_shops_orphans", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

/* POST bodies: none, or {"reason": "..."} for a pause. */
static void
rest_shops_body_run(struct rest_call *rc)
{
	struct rest_shops_call *c = (struct rest_shops_call *)rc;
	const char *known = c->op == REST_SHOPS_PAUSE ? "reason" : "";
	json_t *body = NULL, *v;
	const char *key;
	bool has = false;

	snprintf(c->reason, sizeof(c->reason), "paused by the creator");
	if (evbuffer_get_length(evhttp_request_get_input_buffer(rc->hr->req)) > 0) {
		if ((body = rest_body(rc)) == NULL)
			return;
		json_object_foreach(body, key, v) {
			if (strcmp(key, known) != 0) {
				rest_error(rc, 400, "invalid_body", "%s", rest_unknown_field(key));
				json_decref(body);
				return;
			}
		}
		v = json_object_get(body, "reason");
		if (v != NULL && !rest_reason(v, c->reason, &has)) {
			rest_error(rc, 400, "invalid_body", "reason must be null or text of at most "
			    "255 characters");
			json_decref(body);
			return;
		}
		if (!has)
			snprintf(c->reason, sizeof(c->reason), "paused by the creator");
		json_decref(body);
	}
	rest_shops_change_run(rc);
}

static void
rest_shops_change(struct httpd_req *hr, enum rest_shops_op op)
{
	struct rest_shops_call *c;

	if (!rest_no_query(hr))
		return;
	if (!rest_uuid(hr->params[0])) {
		httpd_error(hr, 400, "invalid_parameter", "the shop id must be a UUID");
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->op = op;
	rest_begin(hr, &c->call, op == REST_SHOPS_DISCONNECT ? rest_shops_change_run :
	    rest_shops_body_run);
}

void
rest_shops_pause(struct httpd_req *hr)
{
	rest_shops_change(hr, REST_SHOPS_PAUSE);
}

void
rest_shops_resume(struct httpd_req *hr)
{
	rest_shops_change(hr, REST_SHOPS_RESUME);
}

void
rest_shops_disconnect(struct httpd_req *hr)
{
	rest_shops_change(hr, REST_SHOPS_DISCONNECT);
}
