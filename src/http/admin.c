/*
 * admin: dead-letter list and replay; the creators.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/admin.h"
#include "orderflow/config.h"
#include "orderflow/creators.h"
#include "orderflow/httpd.h"
#include "orderflow/jwt.h"
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
	pg_pool_prepare(pg, "admin_creators", creators_list_sql);
	pg_pool_prepare(pg, "admin_creator_new", creators_insert_sql);
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

/* ---- creators ----------------------------------------------------------------------- */

static void
admin_on_creators(struct pg_batch *b, void *arg)
{
	struct httpd_req *hr = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		httpd_unavailable(hr, 1, "the creators cannot be read now");
		return;
	}
	httpd_reply(hr, 200, "application/json", PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

void
admin_creators_list(struct httpd_req *hr)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req));
	char limit[24] = "100", after[JWT_UUID_LEN + 1];
	bool has_after = false;
	struct evkeyvalq kv;
	struct evkeyval *e;
	const char *bad = NULL;

	if (!admin_auth(hr))
		return;
	TAILQ_INIT(&kv);
	if (q != NULL && (strlen(q) > 4096 || evhttp_parse_query_str(q, &kv) != 0))
		bad = "the query string cannot be parsed";
	TAILQ_FOREACH(e, &kv, next) {
		if (bad != NULL)
			break;
		if (strcmp(e->key, "limit") == 0 && admin_number(e->value, ADMIN_LIST_MAX) > 0)
			snprintf(limit, sizeof(limit), "%s", e->value);
		else if (strcmp(e->key, "after") == 0 && jwt_uuid_parse(e->value, strlen(e->value), after))
			has_after = true;
		else
			bad = strcmp(e->key, "limit") == 0 ? "limit must be an integer in 1..500" :
			    strcmp(e->key, "after") == 0 ? "after must be a creator id (a UUID)" :
			    "unknown parameter: the parameters are limit and after";
	}
	evhttp_clear_headers(&kv);
	if (bad != NULL) {
		httpd_error(hr, 400, "invalid_parameter", "%s", bad);
		return;
	}
	admin_submit(hr, "admin_creators", (const char *[]){ limit, has_after ? after : NULL }, 2,
	    admin_on_creators);
}

static void
admin_on_creator_made(struct pg_batch *b, void *arg)
{
	struct httpd_req *hr = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *state = pg_batch_sqlstate(b);

	/* A constraint the checks above missed is the caller's to fix, not a reason to retry. */
	if (state != NULL && strncmp(state, "23", 2) == 0) {
		httpd_error(hr, 400, "invalid_body", "the creator was refused: %.200s",
		    pg_batch_error(b));
		return;
	}
	if (pg_batch_error(b) != NULL || r == NULL) {
		httpd_unavailable(hr, 1, "the creator cannot be stored now");
		return;
	}
	if (PQntuples(r) != 1) {
		httpd_error(hr, 409, "conflict", "a creator with this e-mail or id exists already");
		return;
	}
	log_info("creator created", "creator=%s", PQgetvalue(r, 0, 0));
	httpd_reply(hr, 201, "application/json", PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
}

/* {"email", "name"?, "id"?}: NULL when good (params filled in), else why not. */
static const char *
admin_creator_body(json_t *doc, const char **email, const char **name,
    char id[JWT_UUID_LEN + 1], bool *has_id)
{
	const char *key, *why;
	json_t *v;

	json_object_foreach(doc, key, v) {
		if (strcmp(key, "email") != 0 && strcmp(key, "name") != 0 && strcmp(key, "id") != 0)
			return "unknown field: the fields are email, name and id";
		if (!json_is_string(v) && !(json_is_null(v) && strcmp(key, "email") != 0))
			return "email, name and id must be strings";
	}
	if ((*email = json_string_value(json_object_get(doc, "email"))) == NULL)
		return "email is required";
	if ((why = creators_email_check(*email)) != NULL)
		return why;
	*name = json_string_value(json_object_get(doc, "name"));
	if (*name != NULL && (why = creators_name_check(*name)) != NULL)
		return why;
	v = json_object_get(doc, "id");
	*has_id = json_is_string(v);
	if (*has_id && !jwt_uuid_parse(json_string_value(v), json_string_length(v), id))
		return "id must be a UUID";
	return NULL;
}

void
admin_creators_create(struct httpd_req *hr)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(hr->req);
	const char *email = NULL, *name = NULL, *why;
	char id[JWT_UUID_LEN + 1], *local = NULL;
	bool has_id = false;
	json_t *doc;

	if (!admin_auth(hr) || !admin_query(hr, NULL, NULL, NULL, 0))
		return;
	if (!httpd_is_json(hr)) {
		httpd_error(hr, 415, "unsupported_media_type", "Content-Type must be application/json");
		return;
	}
	doc = evbuffer_get_length(in) <= 4096 ? json_loadb((const char *)evbuffer_pullup(in, -1),
	    evbuffer_get_length(in), JSON_REJECT_DUPLICATES, NULL) : NULL;
	if (!json_is_object(doc)) {
		httpd_error(hr, 400, "invalid_body", "the body must be a JSON object of at most 4 KiB");
	} else if ((why = admin_creator_body(doc, &email, &name, id, &has_id)) != NULL) {
		httpd_error(hr, 400, "invalid_body", "%s", why);
	} else {
		if (name == NULL) {
			local = xstrdup(email);
			local[strcspn(local, "@")] = '\0';
		}
		admin_submit(hr, "admin_creator_new", (const char *[]){ has_id ? id : NULL, email,
		    name != NULL ? name : local, "admin" }, 4, admin_on_creator_made);
	}
	free(local);
	json_decref(doc);
}
