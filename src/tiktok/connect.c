/*
 * connect: the authorization link and TikTok's callback.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderflow/config.h"
#include "orderflow/connect.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/shops.h"
#include "orderflow/tt.h"
#include "orderflow/ttauth.h"
#include "orderflow/ttsign.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"

#define CONNECT_TOKEN_PATH "/api/v2/token/get"
#define CONNECT_SHOPS_PATH "/authorization/202309/shops"

/* Expired states are swept as new ones are made; an hour's grace keeps the answer clear. */
static const char connect_state_sql[] =
    "WITH gone AS (DELETE FROM oauth_states WHERE expires_at < now() - interval '1 hour')"
    " INSERT INTO oauth_states (nonce, creator_id, expires_at)"
    " VALUES ($1, $2::uuid, to_timestamp($3::bigint)) RETURNING to_json(expires_at) #>> '{}'";
/* Single use: whoever deletes the row is the one callback that proceeds. */
static const char connect_consume_sql[] =
    "DELETE FROM oauth_states WHERE nonce = $1 AND creator_id = $2::uuid RETURNING 1";
static const char connect_store_sql[] =
    "SELECT shop_connect($1::uuid, $2, $3, $4::jsonb, $5::jsonb)::text";

void
connect_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "connect_state", connect_state_sql);
	pg_pool_prepare(pg, "connect_consume", connect_consume_sql);
	pg_pool_prepare(pg, "connect_store", connect_store_sql);
}

static bool
connect_enabled(const struct config *cfg)
{
	return cfg->tiktok.app_key[0] != '\0' && cfg->tiktok.app_secret != NULL &&
	    cfg->tiktok.service_id[0] != '\0';
}

/* ---- GET /api/shops/connect ------------------------------------------------------- */

struct connect_link {
	struct rest_call call;		/* first */
	char		*url;
	bool		json;		/* Accept: application/json: the URL as data, no redirect */
};

static void
connect_link_free(struct rest_call *rc)
{
	free(((struct connect_link *)rc)->url);
	free(rc);
}

static void
connect_on_state(struct pg_batch *b, void *arg)
{
	struct connect_link *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *state = pg_batch_sqlstate(b);
	json_t *doc;
	char *text;

	if (state != NULL && strcmp(state, "23503") == 0) {
		rest_error(&c->call, 403, "unknown_creator", "the caller is not a creator of this "
		    "service: no shop can be connected for it");
		return;
	}
	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("authorization state not stored", "error=%s", log_quote(pg_batch_error(b)));
		rest_unavailable(&c->call, "the authorization link cannot be made now");
		return;
	}
	doc = json_pack("{s:s, s:s}", "authorize_url", c->url, "expires_at", PQgetvalue(r, 0, 0));
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!c->json)
		evhttp_add_header(evhttp_request_get_output_headers(c->call.hr->req), "Location",
		    c->url);
	evhttp_add_header(evhttp_request_get_output_headers(c->call.hr->req), "Cache-Control",
	    "no-store");
	rest_reply(&c->call, c->json ? 200 : 302, text, strlen(text));
	free(text);
}

static void
connect_link_run(struct rest_call *rc)
{
	struct connect_link *c = (struct connect_link *)rc;
	const struct config *cfg = rc->home->cfg;
	char state[TTAUTH_STATE_LEN + 1], nonce[TTAUTH_NONCE_HEX + 1], exp[24];
	int64_t expires = (int64_t)time(NULL) + cfg->tiktok.state_lifetime / 1000;
	struct pg_batch *b;

	if (!connect_enabled(cfg)) {
		rest_error(rc, 501, "not_configured", "connecting shops is not configured");
		return;
	}
	if (!ttauth_state_make(cfg->tiktok.app_secret, rc->creator, expires, state, nonce)) {
		rest_error(rc, 500, "internal", "the random generator failed");
		return;
	}
	c->url = ttauth_authorize_url(cfg->tiktok.authorize_url, cfg->tiktok.service_id, state);
	snprintf(exp, sizeof(exp), "%lld", (long long)expires);
	b = pg_batch_new(connect_on_state, c);
	pg_batch_add(b, true, "connect_state", 3, (const char *[]){ nonce, rc->creator, exp });
	rest_submit(rc, b);
}

void
connect_start(struct httpd_req *hr)
{
	const char *accept = evhttp_find_header(evhttp_request_get_input_headers(hr->req), "Accept");
	struct connect_link *c;

	if (!rest_no_query(hr))
		return;
	if (!connect_enabled(hr->w->cfg)) {
		httpd_error(hr, 501, "not_configured", "connecting shops is not configured: set "
		    "tiktok.app_key, tiktok.app_secret_file and tiktok.service_id");
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->call.free = connect_link_free;
	c->json = accept != NULL && strstr(accept, "application/json") != NULL;
	rest_begin(hr, &c->call, connect_link_run);
}

/* ---- GET /oauth/tiktok/callback ----------------------------------------------------- */

struct connect_cb {
	struct httpd_req *hr;
	char		creator[37];
	char		nonce[TTAUTH_NONCE_HEX + 1];
	char		*code;
	json_t		*auth;		/* what shop_connect stores */
	json_t		*shops;
};

static bool connect_still_enabled(struct connect_cb *c);

static void
connect_cb_free(struct connect_cb *c)
{
	free(c->code);
	json_decref(c->auth);
	json_decref(c->shops);
	free(c);
}

static void
connect_escape(struct evbuffer *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<': evbuffer_add(out, "&lt;", 4); break;
		case '>': evbuffer_add(out, "&gt;", 4); break;
		case '&': evbuffer_add(out, "&amp;", 5); break;
		case '"': evbuffer_add(out, "&quot;", 6); break;
		case '\'': evbuffer_add(out, "&#39;", 5); break;
		default: evbuffer_add(out, s, 1); break;
		}
	}
}

/* A small page for the person in the browser: what happened, and what to do. */
static void PRINTFLIKE(4, 5)
connect_page(struct httpd_req *hr, int status, const char *title, const char *fmt, ...)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(hr->req);
	struct evbuffer *out = evbuffer_new();
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	evhttp_add_header(h, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evbuffer_add_printf(out, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width\"><title>");
	connect_escape(out, title);
	evbuffer_add_printf(out, "</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:"
	    "36em;margin:3em auto;padding:0 1em}</style></head><body><h1>");
	connect_escape(out, title);
	evbuffer_add_printf(out, "</h1><p>");
	connect_escape(out, msg);
	evbuffer_add_printf(out, "</p></body></html>\n");
	httpd_reply(hr, status, "text/html; charset=utf-8",
	    (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
	evbuffer_free(out);
	if (status >= 400)
		log_info("shop connection refused", "status=%d reason=%s", status, log_quote(msg));
}

/*
 * The page says "connected" only once every worker of this daemon has
 * loaded the shop, so its first webhooks are verified, not refused.
 */
struct connect_barrier {
	atomic_int	left;		/* workers still loading */
	struct connect_cb *c;
	json_t		*doc;		/* what shop_connect returned */
};

static void connect_answer(struct worker *w, void *arg);

static void
connect_loaded(struct worker *w, void *arg)
{
	struct connect_barrier *x = arg;

	if (atomic_fetch_sub(&x->left, 1) == 1)
		worker_post(x->c->hr->w, connect_answer, x);
}

static void
connect_reload_msg(struct worker *w, void *arg)
{
	shops_reload_then(webhook_shops(w->svc[SERVICE_WEBHOOK]), connect_loaded, arg);
}

/* The page, on the request's worker. */
static void
connect_answer(struct worker *w, void *arg)
{
	struct connect_barrier *x = arg;
	struct connect_cb *c = x->c;
	struct httpd_req *hr = c->hr;
	const char *done = hr->w->cfg->tiktok.connect_done_url;
	struct evbuffer *names = evbuffer_new();
	json_t *s;
	size_t i;

	json_array_foreach(json_object_get(x->doc, "shops"), i, s) {
		const char *name = json_string_value(json_object_get(s, "name"));

		evbuffer_add_printf(names, "%s%s (%s)", i > 0 ? ", " : "", name != NULL ? name :
		    "unnamed", json_string_value(json_object_get(s, "tiktok_shop_id")));
		log_info("shop connected", "shop=%s tiktok_shop_id=%s creator=%s",
		    json_string_value(json_object_get(s, "id")),
		    json_string_value(json_object_get(s, "tiktok_shop_id")), c->creator);
	}
	evbuffer_add(names, "", 1);
	if (done[0] != '\0') {
		char *ids = evhttp_uriencode((const char *)evbuffer_pullup(names, -1), -1, 0);
		char *loc = xasprintf("%s%cconnected=%s", done, strchr(done, '?') ? '&' : '?', ids);

		evhttp_add_header(evhttp_request_get_output_headers(hr->req), "Location", loc);
		connect_page(hr, 303, "Shop connected", "Connected: %s.",
		    (const char *)evbuffer_pullup(names, -1));
		free(loc);
		free(ids);
	} else {
		connect_page(hr, 200, "Shop connected", "Connected: %s. Orders from TikTok now "
		    "reach orderflow; you can close this page.",
		    (const char *)evbuffer_pullup(names, -1));
	}
	evbuffer_free(names);
	json_decref(x->doc);
	free(x);
	connect_cb_free(c);
}

static void
connect_on_stored(struct pg_batch *b, void *arg)
{
	struct connect_cb *c = arg;
	struct httpd_req *hr = c->hr;
	const char *state = pg_batch_sqlstate(b);
	PGresult *r = pg_batch_result(b, 0);
	struct worker_set *set = hr->w->set;
	struct connect_barrier *x;
	json_t *doc;

	if (state != NULL && strcmp(state, "OF001") == 0) {
		connect_page(hr, 409, "Shop not connected", "%s. Nothing was stored: sign in with the "
		    "creator account that owns it, or ask the operator to move it.",
		    pg_batch_error(b));
		connect_cb_free(c);
		return;
	}
	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1 ||
	    (doc = json_loads(PQgetvalue(r, 0, 0), 0, NULL)) == NULL) {
		log_warn("shop connection not stored", "error=%s", log_quote(pg_batch_error(b)));
		connect_page(hr, 503, "Shop not connected", "The shop could not be stored just now. "
		    "Nothing was stored: start again from the dashboard in a minute.");
		connect_cb_free(c);
		return;
	}
	x = xcalloc(1, sizeof(*x));
	atomic_init(&x->left, set->n);
	x->c = c;
	x->doc = doc;
	for (int i = 0; i < set->n; i++)
		worker_post_owned(&set->workers[i], connect_reload_msg, connect_loaded, x);
}

static void
connect_store(struct connect_cb *c)
{
	const struct config *cfg = c->hr->w->cfg;
	char *auth, *shops;
	struct pg_batch *b;

	if (!connect_still_enabled(c))
		return;
	auth = json_dumps(c->auth, JSON_COMPACT);
	shops = json_dumps(c->shops, JSON_COMPACT);
	b = pg_batch_new(connect_on_stored, c);

	pg_batch_add(b, true, "connect_store", 5, (const char *[]){ c->creator, cfg->tiktok.app_key,
	    cfg->tiktok.app_secret, auth, shops });
	free(auth);
	free(shops);
	if (pg_submit(c->hr->w->pg, b) != PG_OK) {
		connect_page(c->hr, 503, "Shop not connected", "The database is unavailable. Nothing "
		    "was stored: start again from the dashboard in a minute.");
		connect_cb_free(c);
	}
}

/* A reload may have turned connecting off between two steps: say so rather than guess. */
static bool
connect_still_enabled(struct connect_cb *c)
{
	if (connect_enabled(c->hr->w->cfg))
		return true;
	connect_page(c->hr, 501, "Not configured", "Connecting shops was turned off on this server "
	    "meanwhile. Nothing was stored.");
	connect_cb_free(c);
	return false;
}

/* Why a TikTok call failed, for the page: retry-able or refused. */
static void
connect_tt_failed(struct connect_cb *c, const struct tt_result *r, const char *what)
{
	if (r->status == TT_RETRY || r->status == TT_OPEN)
		connect_page(c->hr, 502, "Shop not connected", "TikTok did not answer %s (%s). "
		    "Nothing was stored: start again from the dashboard.", what, r->error);
	else
		connect_page(c->hr, 400, "Shop not connected", "TikTok refused %s (%s). Nothing was "
		    "stored: start again from the dashboard.", what, r->error);
	connect_cb_free(c);
}

static void
connect_on_shops(const struct tt_result *r, void *arg)
{
	struct connect_cb *c = arg;
	const char *why = NULL;

	if (r->status != TT_OK) {
		connect_tt_failed(c, r, "the list of authorized shops");
		return;
	}
	if ((c->shops = ttauth_shops_parse(r->data, &why)) == NULL) {
		connect_page(c->hr, 400, "Shop not connected", "TikTok's list of authorized shops is "
		    "unusable: %s. Nothing was stored.", why);
		connect_cb_free(c);
		return;
	}
	connect_store(c);
}

static void
connect_on_token(const struct tt_result *r, void *arg)
{
	struct connect_cb *c = arg;
	const struct config *cfg = c->hr->w->cfg;
	struct ttauth_grant g;
	struct tt_creds creds;
	const char *why = NULL;

	if (r->status != TT_OK) {
		connect_tt_failed(c, r, "the authorization code (expired, or used already?)");
		return;
	}
	if (!connect_still_enabled(c))
		return;
	if (!ttauth_grant_parse(r->data, (int64_t)time(NULL), true, &g, &why)) {
		connect_page(c->hr, 502, "Shop not connected", "TikTok's answer to the authorization "
		    "code is unusable: %s. Nothing was stored.", why);
		connect_cb_free(c);
		return;
	}
	c->auth = json_pack("{s:s, s:s?, s:s, s:I, s:s, s:I}", "open_id", g.open_id,
	    "seller_name", g.seller_name, "access_token", g.access_token,
	    "access_token_expires_at", (json_int_t)g.access_expires, "refresh_token", g.refresh_token,
	    "refresh_token_expires_at", (json_int_t)g.refresh_expires);
	creds = (struct tt_creds){ cfg->tiktok.app_key, cfg->tiktok.app_secret,
	    json_string_value(json_object_get(c->auth, "access_token")), "", NULL };
	if (tt_call(c->hr->w->svc[SERVICE_TT], &creds, "GET", CONNECT_SHOPS_PATH, NULL, 0, NULL,
	    connect_on_shops, c) != TT_OK) {
		struct tt_result busy = { .status = TT_RETRY, .error = "the client is busy" };

		connect_tt_failed(c, &busy, "the list of authorized shops");
	}
}

static void
connect_on_consumed(struct pg_batch *b, void *arg)
{
	struct connect_cb *c = arg;
	const struct config *cfg = c->hr->w->cfg;
	PGresult *r = pg_batch_result(b, 0);
	const char *secret = cfg->tiktok.app_secret != NULL ? cfg->tiktok.app_secret : "";
	const struct ttsign_param q[] = {
		{ "app_key", cfg->tiktok.app_key }, { "app_secret", secret },
		{ "auth_code", c->code }, { "grant_type", "authorized_code" },
	};

	if (pg_batch_error(b) == NULL && r != NULL && PQntuples(r) == 1 && !connect_still_enabled(c))
		return;
	if (pg_batch_error(b) != NULL || r == NULL) {
		connect_page(c->hr, 503, "Shop not connected", "The database is unavailable: try the "
		    "link again in a minute.");
		connect_cb_free(c);
		return;
	}
	if (PQntuples(r) != 1) {
		connect_page(c->hr, 400, "Shop not connected", "This authorization link was used "
		    "already. Nothing was stored: start again from the dashboard.");
		connect_cb_free(c);
		return;
	}
	if (tt_auth_get(c->hr->w->svc[SERVICE_TT], CONNECT_TOKEN_PATH, q, NELEM(q),
	    connect_on_token, c) != TT_OK) {
		struct tt_result busy = { .status = TT_RETRY, .error = "the TikTok breaker is open "
		    "or the client is busy" };

		connect_tt_failed(c, &busy, "the authorization code");
	}
}

/* The parameters TikTok sends back; others (locale, shop_region ...) are ignored. */
static bool
connect_params(struct httpd_req *hr, char **code, char **state, char **error)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req));
	struct evkeyvalq kv;
	const char *v;

	TAILQ_INIT(&kv);
	if (q == NULL || strlen(q) > 8192 || evhttp_parse_query_str(q, &kv) != 0) {
		evhttp_clear_headers(&kv);
		return false;
	}
	*code = (v = evhttp_find_header(&kv, "code")) != NULL ? xstrdup(v) : NULL;
	*state = (v = evhttp_find_header(&kv, "state")) != NULL ? xstrdup(v) : NULL;
	*error = (v = evhttp_find_header(&kv, "error")) != NULL ? xstrdup(v) : NULL;
	evhttp_clear_headers(&kv);
	return true;
}

/* The state's verdict as a page; true when it is good. */
static bool
connect_check_state(struct httpd_req *hr, const char *state, struct connect_cb *c)
{
	switch (ttauth_state_check(hr->w->cfg->tiktok.app_secret, state, (int64_t)time(NULL),
	    c->creator, c->nonce)) {
	case TTAUTH_STATE_OK:
		return true;
	case TTAUTH_STATE_EXPIRED:
		connect_page(hr, 400, "Shop not connected", "This authorization link has expired. "
		    "Nothing was stored: start again from the dashboard.");
		return false;
	default:
		connect_page(hr, 400, "Shop not connected", "This authorization link was not made "
		    "by this service (the state is missing, altered or forged). Nothing was stored.");
		return false;
	}
}

void
connect_callback(struct httpd_req *hr)
{
	char *code = NULL, *state = NULL, *error = NULL;
	struct connect_cb *c;
	struct pg_batch *b;

	if (!connect_enabled(hr->w->cfg)) {
		connect_page(hr, 501, "Not configured", "Connecting shops is not configured on this "
		    "server (tiktok.app_key, tiktok.app_secret_file, tiktok.service_id).");
		return;
	}
	if (!connect_params(hr, &code, &state, &error) || state == NULL ||
	    (code == NULL && error == NULL)) {
		connect_page(hr, 400, "Shop not connected", "TikTok's answer is missing its code or "
		    "state. Nothing was stored.");
	} else if (error != NULL || code[0] == '\0') {
		connect_page(hr, 400, "Shop not connected", "TikTok did not authorize the app (%.200s). "
		    "Nothing was stored.", error != NULL ? error : "no code");
	} else if (!ttauth_token_ok(code, 1024)) {
		connect_page(hr, 400, "Shop not connected", "The authorization code is malformed. "
		    "Nothing was stored.");
	} else {
		c = xcalloc(1, sizeof(*c));
		c->hr = hr;
		if (!connect_check_state(hr, state, c)) {
			connect_cb_free(c);
		} else {
			c->code = code;
			code = NULL;
			b = pg_batch_new(connect_on_consumed, c);
			pg_batch_add(b, true, "connect_consume", 2, (const char *[]){ c->nonce,
			    c->creator });
			if (pg_submit(hr->w->pg, b) != PG_OK) {
				connect_page(hr, 503, "Shop not connected", "The database is "
				    "unavailable: try the link again in a minute.");
				connect_cb_free(c);
			}
		}
	}
	free(code);
	free(state);
	free(error);
}
