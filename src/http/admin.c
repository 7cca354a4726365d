/*
 * admin: dead-letter list and replay.
 */
#include "config.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/admin.h"
#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/proc.h"
#include "orderflow/worker.h"

/* Built as JSON by PostgreSQL: one round trip, one string to send. */
static const char admin_list_sql[] =
    "SELECT json_build_object('dead_letters', coalesce(json_agg(json_build_object("
    " 'id', id, 'shop_id', shop_id, 'tiktok_shop_id', tiktok_shop_id, 'event_type', event_type,"
    " 'order_id', order_id, 'attempts', attempts, 'last_error', last_error,"
    " 'received_at', received_at, 'dead_at', dead_at) ORDER BY id DESC), '[]'),"
    " 'next_before_id', CASE WHEN count(*) = $1::integer THEN min(id) END)::text"
    " FROM (SELECT * FROM webhook_events WHERE dead_at IS NOT NULL"
    " AND ($2::bigint IS NULL OR id < $2::bigint) ORDER BY id DESC LIMIT $1::integer) d";
static const char admin_replay_sql[] =
    "WITH r AS (UPDATE webhook_events SET dead_at = NULL, attempts = 0, last_error = NULL,"
    " lease_owner = NULL, lease_until = NULL, next_attempt_at = NULL"
    " WHERE id IN (SELECT id FROM webhook_events WHERE dead_at IS NOT NULL"
    "  AND ($1::bigint IS NULL OR id = $1::bigint) ORDER BY id LIMIT $2::integer)"
    " RETURNING id, last_error),"
    " a AS (INSERT INTO audit_log (actor, action, entity_type, entity_id, before)"
    " SELECT 'admin', 'webhook_event.replayed', 'webhook_event', id::text,"
    " '{\"dead\":true}'::jsonb FROM r RETURNING 1)"
    " SELECT count(*) FROM r";

void
admin_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "admin_list", admin_list_sql);
	pg_pool_prepare(pg, "admin_replay", admin_replay_sql);
}

/* Bearer admin.token, compared in constant time; answers the request when refused. */
static bool
admin_auth(struct httpd_req *hr)
{
	const char *token = hr->w->cfg->admin.token;
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(hr->req),
	    "Authorization");
	size_t tlen = strlen(token);

	if (tlen == 0) {
		httpd_error(hr, 403, "admin_disabled",
		    "admin endpoints are disabled: set admin.token in the configuration");
		return false;
	}
	if (h != NULL && strncmp(h, "Bearer ", 7) == 0 && strlen(h + 7) == tlen &&
	    CRYPTO_memcmp(h + 7, token, tlen) == 0)
		return true;
	evhttp_add_header(evhttp_request_get_output_headers(hr->req), "WWW-Authenticate",
	    "Bearer realm=\"orderflow-admin\"");
	httpd_error(hr, 401, "unauthorized", "a valid admin bearer token is required");
	return false;
}

/* A positive integer of at most max, or -1. */
static long long
admin_number(const char *s, long long max)
{
	char *end;
	long long v;

	if (s == NULL || s[0] < '0' || s[0] > '9' || strlen(s) > 19)
		return -1;
	v = strtoll(s, &end, 10);
	return *end != '\0' || v < 1 || v > max ? -1 : v;
}

/* Query parameters, each known and valid; false when the request was answered 400. */
static bool
admin_query(struct httpd_req *hr, const char *const *known, const long long *max,
    long long *vals, size_t n)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req));
	struct evkeyvalq kv;
	struct evkeyval *e;
	bool ok = true;

	TAILQ_INIT(&kv);
	if (q != NULL && evhttp_parse_query_str(q, &kv) != 0) {
		httpd_error(hr, 400, "invalid_query", "the query string cannot be parsed");
		return false;
	}
	TAILQ_FOREACH(e, &kv, next) {
		size_t i;

		for (i = 0; i < n && strcmp(e->key, known[i]) != 0; i++)
			;
		if (i == n || (vals[i] = admin_number(e->value, max[i])) < 0) {
			httpd_error(hr, 400, "invalid_parameter", i == n ? "unknown parameter \"%.64s\"" :
			    "parameter \"%.64s\" must be an integer in 1..%lld", e->key,
			    i == n ? 0 : max[i]);
			ok = false;
			break;
		}
	}
	evhttp_clear_headers(&kv);
	return ok;
}

static void
admin_on_list(struct pg_batch *b, void *arg)
{
	struct httpd_req *hr = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		httpd_unavailable(hr, 1, "the dead letters cannot be read now");
		return;
	}
	httpd_reply(hr, 200, "application/json", PQgetvalue(r, 0, 0),
	    (size_t)PQgetlength(r, 0, 0));
}

/* Submit one statement for hr, answering 503 when the pool refuses. */
static void
admin_submit(struct httpd_req *hr, const char *stmt, const char *const *params, int n,
    pg_batch_cb *cb)
{
	struct pg_batch *b = pg_batch_new(cb, hr);

	pg_batch_add(b, true, stmt, n, params);
	if (pg_submit(hr->w->pg, b) != PG_OK)
		httpd_unavailable(hr, 1, "database unavailable");
}

void
admin_dead_letters(struct httpd_req *hr)
{
	static const char *const known[] = { "limit", "before_id" };
	static const long long max[] = { ADMIN_LIST_MAX, 9223372036854775807LL };
	long long vals[2] = { 50, 0 };
	char limit[24], before[24];

	if (!admin_auth(hr) || !admin_query(hr, known, max, vals, 2))
		return;
	snprintf(limit, sizeof(limit), "%lld", vals[0]);
	snprintf(before, sizeof(before), "%lld", vals[1]);
	admin_submit(hr, "admin_list", (const char *[]){ limit, vals[1] > 0 ? before : NULL }, 2,
	    admin_on_list);
}

static void
admin_on_replay(struct pg_batch *b, void *arg)
{
	struct httpd_req *hr = arg;
	PGresult *r = pg_batch_result(b, 0);
	char body[64];
	long long n;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		httpd_unavailable(hr, 1, "the dead letters cannot be replayed now");
		return;
	}
	n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	if (n == 0 && hr->params[0] != NULL) {
		httpd_error(hr, 404, "not_found", "no dead letter with id %s", hr->params[0]);
		return;
	}
	if (n > 0) {
		log_info("dead letters replayed", "count=%lld", n);
		proc_wake_claim(hr->w->set);
	}
	snprintf(body, sizeof(body), "{\"replayed\":%lld}", n);
	httpd_reply(hr, 200, "application/json", body, strlen(body));
}

void
admin_replay_one(struct httpd_req *hr)
{
	if (!admin_auth(hr) || !admin_query(hr, NULL, NULL, NULL, 0))
		return;
	if (admin_number(hr->params[0], 9223372036854775807LL) < 0) {
		httpd_error(hr, 400, "invalid_parameter", "the dead letter id must be a positive integer");
		return;
	}
	admin_submit(hr, "admin_replay", (const char *[]){ hr->params[0], "1" }, 2, admin_on_replay);
}

void
admin_replay_all(struct httpd_req *hr)
{
	static const char *const known[] = { "limit" };
	static const long long max[] = { ADMIN_REPLAY_MAX };
	long long vals[1] = { ADMIN_REPLAY_MAX };
	char limit[24];

	if (!admin_auth(hr) || !admin_query(hr, known, max, vals, 1))
		return;
	snprintf(limit, sizeof(limit), "%lld", vals[0]);
	admin_submit(hr, "admin_replay", (const char *[]){ NULL, limit }, 2, admin_on_replay);
}
